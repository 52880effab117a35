//! The brokers the `broker-restart` scenario owns: a private RabbitMQ node and a private
//! tansu on PostgreSQL storage, each on a free port. The scenario stops and starts them;
//! owning them means the shared brokers other tests use are never touched.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::worker::free_port;

/// tansu 0.6's PostgreSQL schema (upstream `etc/initdb.d/010-schema.sql` at tag v0.6.0,
/// Apache-2.0): tansu does not create its tables itself.
const TANSU_PG_SCHEMA: &str = include_str!("tansu_pg_schema.sql");

/// How a broker is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// RabbitMQ: `rabbitmqctl stop_app` (the node's Erlang VM keeps running).
    StopApp,
    /// tansu: SIGTERM.
    Sigterm,
    /// tansu: SIGKILL.
    Sigkill,
}

/// Runs a command to completion off the async threads; fails with its stderr.
async fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let what = what.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = command
            .output()
            .with_context(|| format!("{what}: cannot run it (is it installed?)"))?;
        if !out.status.success() {
            bail!(
                "{what}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    })
    .await?
}

/// Waits until `port` on loopback accepts connections; when it first did.
async fn until_listening(port: u16, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("nothing listens on 127.0.0.1:{port} after {limit:?}")
}

/// A RabbitMQ node of its own (`rabbitmq-server -detached` with its own name, ports,
/// data and logs in the run's directory).
pub struct OwnRabbit {
    node: String,
    port: u16,
    dir: PathBuf,
    running: bool,
}

impl OwnRabbit {
    /// Starts the node and waits for it. Needs `rabbitmq-server` and root (or the
    /// `rabbitmq` user): Debian's wrapper runs the node as `rabbitmq`.
    pub async fn start(run_id: &str, dir: &Path) -> anyhow::Result<Self> {
        let (port, dist) = (free_port()?, free_port()?);
        let dir = dir.join("rabbitmq");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("rabbitmq.conf");
        std::fs::write(&conf, format!("listeners.tcp.local = 127.0.0.1:{port}\n"))?;
        // The node runs as `rabbitmq`; as root, hand it the directory.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status();
        let node = format!("{run_id}@localhost");
        let mut server = Command::new("rabbitmq-server");
        server
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_CONFIG_FILE", &conf)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_ENABLED_PLUGINS", "")
            .stdin(Stdio::null());
        run(server, "rabbitmq-server -detached").await?;
        let mut own = Self {
            node,
            port,
            dir,
            running: true,
        };
        own.await_startup().await?;
        Ok(own)
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` (guest may log in over loopback).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    async fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new("rabbitmqctl");
        command.args(["-q", "-n", &self.node]).args(args);
        run(command, &format!("rabbitmqctl -n {} {args:?}", self.node)).await
    }

    async fn await_startup(&mut self) -> anyhow::Result<()> {
        // `await_startup` fails at once while the node's VM is still booting.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match self.ctl(&["await_startup", "--timeout", "60"]).await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!("logs in {}", self.dir.display())))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        until_listening(self.port, Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// `rabbitmqctl stop_app`: every connection closes, durable queues and persistent
    /// messages stay on disk.
    pub async fn stop_app(&mut self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"]).await
    }

    /// `start_app`, then `await_startup`; when the AMQP port first accepted again
    /// (watched meanwhile: the commands themselves take a second or two each).
    pub async fn start_app(&mut self) -> anyhow::Result<Instant> {
        let limit = Duration::from_secs(60);
        let (started, up) =
            tokio::join!(self.ctl(&["start_app"]), until_listening(self.port, limit));
        started?;
        let up = up?;
        self.await_startup().await?;
        Ok(up)
    }

    /// Stops the node (its data goes with the run's directory).
    pub async fn shut_down(&mut self) -> anyhow::Result<()> {
        if std::mem::take(&mut self.running) {
            self.ctl(&["stop"]).await?;
        }
        Ok(())
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        if self.running {
            // An early error: do not leave a node behind.
            let _ = Command::new("rabbitmqctl")
                .args(["-q", "-n", &self.node, "stop"])
                .status();
        }
    }
}

/// PostgreSQL for tansu: `CHAOS_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`.
fn postgres_base() -> String {
    std::env::var("CHAOS_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".to_owned())
}

async fn psql(database_url: String, sql: &str) -> anyhow::Result<()> {
    let script = std::env::temp_dir().join(format!("seawall-chaos-{}.sql", fastrand::u64(..)));
    std::fs::write(&script, sql)?;
    let mut command = Command::new("psql");
    command
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &database_url, "-f"])
        .arg(&script);
    let result = run(command, "psql").await;
    let _ = std::fs::remove_file(&script);
    result
}

/// A tansu broker of its own, storing in a fresh PostgreSQL database, so its data
/// survives the process.
pub struct OwnTansu {
    port: u16,
    database: String,
    log: PathBuf,
    child: Option<Child>,
}

impl OwnTansu {
    /// Creates the database and its schema, and starts tansu on a free port.
    pub async fn start(run_id: &str, dir: &Path) -> anyhow::Result<Self> {
        let database = run_id.replace('-', "_");
        let base = postgres_base();
        psql(
            format!("{base}/postgres"),
            &format!("create database {database};"),
        )
        .await
        .context("creating tansu's database (PostgreSQL, CHAOS_POSTGRES_URL)")?;
        psql(format!("{base}/{database}"), TANSU_PG_SCHEMA).await?;
        let mut own = Self {
            port: free_port()?,
            database,
            log: dir.join("tansu.log"),
            child: None,
        };
        own.start_again().await?;
        Ok(own)
    }

    /// `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process on the same port and database; when the port accepted.
    pub async fn start_again(&mut self) -> anyhow::Result<Instant> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--cluster-id", "seawall-chaos", "--storage-engine"])
            // Loopback: no TLS (tansu checks the server's certificate against the host
            // name, and a local PostgreSQL's snakeoil certificate names `localhost`).
            .arg(format!(
                "{}/{}?sslmode=disable",
                postgres_base(),
                self.database
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context(
                "starting tansu (cargo install tansu --locked --features dynostore,postgres)",
            )?;
        self.child = Some(child);
        until_listening(self.port, Duration::from_secs(30))
            .await
            .with_context(|| format!("tansu did not start; log: {}", self.log.display()))
    }

    /// SIGTERM (waiting for the exit, SIGKILL after 10 s) or SIGKILL.
    pub async fn stop(&mut self, how: Halt) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if how == Halt::Sigterm {
            let mut term = Command::new("kill");
            term.args(["-TERM", &child.id().to_string()]);
            run(term, "kill -TERM tansu").await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("  tansu outlived SIGTERM by 10s: SIGKILL");
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Stops it; drops the database after a clean run, keeps it to look into otherwise.
    pub async fn shut_down(&mut self, drop_database: bool) -> anyhow::Result<()> {
        self.stop(Halt::Sigkill).await?;
        if drop_database {
            let sql = format!("drop database {} with (force);", self.database);
            psql(format!("{}/postgres", postgres_base()), &sql).await?;
        } else {
            println!("tansu's database kept: {}", self.database);
        }
        Ok(())
    }
}

impl Drop for OwnTansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

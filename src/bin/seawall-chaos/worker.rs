//! The worker under test: `seawall run` as a child process on a generated config.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The broker side of a run.
pub enum Source {
    /// A topic on Kafka brokers.
    Kafka { brokers: String, topic: String },
    /// A queue on RabbitMQ.
    Rabbit { url: String, queue: String },
}

impl Source {
    /// The `source.…` line of the route.
    fn toml(&self) -> String {
        match self {
            Source::Kafka { brokers, topic } => format!(
                "source.kafka = {{ brokers = \"{brokers}\", group = \"{topic}-g\", \
                 topics = [\"{topic}\"], commit_interval = \"100ms\", \
                 properties = {{ \"session.timeout.ms\" = \"6000\" }} }}"
            ),
            Source::Rabbit { url, queue } => {
                format!("source.rabbitmq = {{ url = \"{url}\", queue = \"{queue}\" }}")
            }
        }
    }
}

/// How long a graceful stop may take (the config's `shutdown_deadline`).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The config file: one route `chaos` from `source` to `downstream`.
pub fn config(source: &Source, downstream: &str, admin: &str) -> String {
    format!(
        r#"shutdown_deadline = "{}s"

[admin]
listen = "{admin}"

[store]
path = "store"

[routes.chaos]
{}
handler.http = {{ url = "{downstream}/effects" }}
handler_timeout = "5s"
retry = {{ max_attempts = 5, initial_backoff = "50ms", max_backoff = "1s" }}
breaker = {{ min_calls = 20, failure_ratio = 0.5, window = "5s", cool_down = "1s" }}
"#,
        SHUTDOWN_DEADLINE.as_secs(),
        source.toml()
    )
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The request header naming the worker process that made a downstream call.
pub const WORKER_HEADER: &str = "x-chaos-worker";
/// Its value on group-kill's partner's calls.
pub const PARTNER: &str = "partner";
/// What the calls of the worker the scenarios stop start with; its n-th start's calls
/// carry `main-n`.
pub const MAIN: &str = "main-";

/// Which worker a process is.
#[derive(Clone, Copy)]
pub enum Role {
    /// The worker the scenarios stop and start again.
    Main,
    /// group-kill's partner, never stopped.
    Partner,
}

/// The config with `name` sent in [`WORKER_HEADER`] on every handler call. Parsed, not
/// edited as text: the broker-restart scenario rewrites the generated config.
pub fn tag_calls(config: &str, name: &str) -> anyhow::Result<String> {
    let mut table: toml::Table = config.parse().context("parsing the worker config")?;
    let http = table
        .get_mut("routes")
        .and_then(|r| r.get_mut("chaos"))
        .and_then(|c| c.get_mut("handler"))
        .and_then(|h| h.get_mut("http"))
        .and_then(toml::Value::as_table_mut)
        .with_context(|| format!("no routes.chaos.handler.http to tag in:\n{config}"))?;
    let headers = http
        .entry("headers")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .context("routes.chaos.handler.http.headers is not a table")?;
    headers.insert(WORKER_HEADER.into(), name.into());
    Ok(toml::to_string(&table)?)
}

/// The worker process, started again after each stop.
pub struct Worker {
    bin: PathBuf,
    config: PathBuf,
    /// The config's text, written to `config` at each start with that start's name.
    text: String,
    role: Role,
    admin: String,
    log: PathBuf,
    child: Option<Child>,
    /// Starts so far.
    pub starts: u32,
}

impl Worker {
    /// A worker in `role` that runs `bin` on `text` written to `config`, logging into
    /// `dir`.
    pub fn new(
        bin: &Path,
        config: &Path,
        text: String,
        role: Role,
        admin: &str,
        dir: &Path,
    ) -> Self {
        Self {
            bin: bin.to_owned(),
            config: config.to_owned(),
            text,
            role,
            admin: admin.to_owned(),
            log: dir.join("worker.log"),
            child: None,
            starts: 0,
        }
    }

    /// The name the running (or last) process's calls carry in [`WORKER_HEADER`]:
    /// `partner`, or `main-` and the start's number. A request written just before a
    /// SIGKILL can reach the downstream after it, so the checker tells a killed
    /// process's calls from its successor's by this name, not by time.
    pub fn name(&self) -> String {
        match self.role {
            Role::Main => format!("{MAIN}{}", self.starts),
            Role::Partner => PARTNER.to_owned(),
        }
    }

    /// Writes its config and starts it, then waits until `/readyz` answers 200.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        std::fs::write(&self.config, tag_calls(&self.text, &self.name())?)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let url = format!("http://{}/readyz", self.admin);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                bail!("worker exited with {status}; log: {}", self.log.display());
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("worker not ready within 60s; log: {}", self.log.display())
    }

    /// Whether `/readyz` answers 200 now.
    pub async fn is_ready(&self) -> bool {
        let url = format!("http://{}/readyz", self.admin);
        match reqwest::get(&url).await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file every start appends to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM; waits at most `limit` for the exit: its status and how long it took
    /// (`None` when it outlived `limit` and was killed).
    pub async fn terminate(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<Option<(ExitStatus, Duration)>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let sent = Instant::now();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        while sent.elapsed() < limit {
            if let Some(status) = child.try_wait()? {
                return Ok(Some((status, sent.elapsed())));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill()?;
        child.wait()?;
        Ok(None)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_carries_the_worker_name() {
        let source = Source::Kafka {
            brokers: "b:9092".into(),
            topic: "t".into(),
        };
        let config = config(&source, "http://127.0.0.1:1", "127.0.0.1:2");
        let tagged: toml::Value = toml::from_str(&tag_calls(&config, "main-2").unwrap()).unwrap();
        let http = &tagged["routes"]["chaos"]["handler"]["http"];
        assert_eq!(http["headers"][WORKER_HEADER].as_str(), Some("main-2"));
        assert_eq!(http["url"].as_str(), Some("http://127.0.0.1:1/effects"));
        assert!(tag_calls("no = \"handler\"", "main-1").is_err());
        // The broker-restart scenario's rewritten config is tagged as well.
        let rewritten = crate::broker_restart::tune_config(&config).unwrap();
        let tagged: toml::Value =
            toml::from_str(&tag_calls(&rewritten, "main-1").unwrap()).unwrap();
        let http = &tagged["routes"]["chaos"]["handler"]["http"];
        assert_eq!(http["headers"][WORKER_HEADER].as_str(), Some("main-1"));
    }

    #[test]
    fn the_main_worker_is_named_by_its_start() {
        let dir = Path::new("/nonexistent");
        let mut main = Worker::new(dir, dir, String::new(), Role::Main, "a", dir);
        main.starts = 2;
        assert_eq!(main.name(), "main-2");
        let partner = Worker::new(dir, dir, String::new(), Role::Partner, "a", dir);
        assert_eq!(partner.name(), PARTNER);
    }
}

//! Runs the `seawall` binary as a worker process with a config file, for end-to-end
//! tests; reads its admin endpoints and stops it with SIGTERM.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct WorkerProc {
    child: Child,
    pub admin: String,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

/// A free loopback port for the admin listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl WorkerProc {
    /// Writes `config` (with `[admin] listen` and `[store] path` added) and starts
    /// `seawall run` on it; waits until `/readyz` answers 200.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin = format!("127.0.0.1:{}", free_port());
        let text = format!(
            "[admin]\nlisten = \"{admin}\"\n\n[store]\npath = \"store\"\n\n[contracts]\ndir = \"{}\"\n\n{config}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemas")
        );
        let path = dir.path().join("seawall.toml");
        std::fs::write(&path, text).unwrap();
        let log = dir.path().join("worker.log");
        let child = Command::new(env!("CARGO_BIN_EXE_seawall"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "seawall=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut worker = Self {
            child,
            admin,
            dir,
            log,
        };
        worker.until_ready(Duration::from_secs(60));
        worker
    }

    fn until_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("worker exited with {status}:\n{}", self.log());
            }
            if self.get("/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("worker not ready within {limit:?}:\n{}", self.log());
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the admin listener: status and body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(&self.admin).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    }

    /// The value of `seawall_messages_total{route,outcome}` now.
    pub fn counter(&self, route: &str, outcome: &str) -> u64 {
        let (_, body) = self.get("/metrics").unwrap_or_default();
        let wanted = format!("seawall_messages_total{{route=\"{route}\",outcome=\"{outcome}\"}} ");
        body.lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit (at most `limit`).
    pub fn stop(self, limit: Duration) -> (ExitStatus, String) {
        self.terminate();
        self.wait(limit)
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the exit (at most `limit`).
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("worker did not stop within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Process crashes: a child process running the pipeline on a sled store is killed, and
//! the parent checks what survived.
//!
//! The test binary re-runs itself as the child (`SEAWALL_CRASH_CHILD` selects the mode),
//! so the child is real pipeline code in a separate process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use seawall::{
    handler_fn, Ack, DeadLetter, DeadLetterSink, Delivery, IdempotencyStore, Message, Pipeline,
    PipelineConfig, Settle, SinkError, SledStore, Source, SourceError,
};

const MODE: &str = "SEAWALL_CRASH_CHILD";
const DIR: &str = "SEAWALL_CRASH_DIR";

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Announce(String);

impl Settle for Announce {
    fn complete(self: Box<Self>) {
        say(format!("released {}", self.0));
    }
    fn abandon(self: Box<Self>) {}
}

/// Yields `messages` and then ends, or never ends if `endless`.
struct ScriptSource {
    messages: std::vec::IntoIter<Message>,
    endless_from: Option<u64>,
}

impl Source for ScriptSource {
    async fn next(&mut self) -> Option<Result<Delivery, SourceError>> {
        let message = match self.messages.next() {
            Some(m) => m,
            None => {
                let n = self.endless_from.as_mut()?;
                *n += 1;
                Message::new(n.to_string())
                    .with_key(format!("key-{}", *n % 50))
                    .with_header("idempotency-key", format!("m-{n}"))
            }
        };
        let id =
            String::from_utf8_lossy(message.headers().get("idempotency-key").unwrap()).into_owned();
        Some(Ok(Delivery::new(message, Ack::new(Announce(id)))))
    }
}

struct AnnounceSink;

impl DeadLetterSink for AnnounceSink {
    async fn send(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let key = letter
            .info
            .idempotency_key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        say(format!(
            "dead-letter {} {}",
            letter.info.kind,
            key.unwrap_or_default()
        ));
        Ok(())
    }
}

fn child_main(mode: &str) {
    let dir = std::env::var(DIR).expect("store dir");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SledStore::open(&dir).unwrap();
        let mut config = PipelineConfig::default();
        config.retry.max_attempts = 3;
        let (messages, endless_from) = match mode {
            "endless" => (Vec::new(), Some(0)),
            _ => (
                vec![
                    Message::new("ok")
                        .with_key("a")
                        .with_header("idempotency-key", "ok-1"),
                    Message::new("poison")
                        .with_key("b")
                        .with_header("idempotency-key", "poison"),
                    Message::new("ok")
                        .with_key("b")
                        .with_header("idempotency-key", "ok-2"),
                ],
                None,
            ),
        };
        let handler = handler_fn(|m: Message| async move {
            if m.payload() == "poison" {
                // A crash the handler cannot catch: a native library's abort, say.
                std::process::abort();
            }
            say(format!(
                "handled {}",
                String::from_utf8_lossy(m.headers().get("idempotency-key").unwrap())
            ));
            Ok(())
        });
        let source = ScriptSource {
            messages: messages.into_iter(),
            endless_from,
        };
        let pipeline = Pipeline::builder()
            .source(source)
            .handler(handler)
            .store(store)
            .dead_letter(AnnounceSink)
            .config(config)
            .build()
            .unwrap();
        pipeline.run().await.unwrap();
    });
}

/// Entry point for the child process; a no-op in the parent.
#[test]
fn crash_child_entry() {
    if let Ok(mode) = std::env::var(MODE) {
        child_main(&mode);
    }
}

fn child(mode: &str, dir: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn every_released_completion_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut released = Vec::new();
    for round in 0..3 {
        let mut process = child("endless", dir.path());
        let lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let target = 1500 * (round + 1);
        for line in lines {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("released ") {
                released.push(id.to_owned());
                if released.len() >= target {
                    break;
                }
            }
        }
        process.kill().unwrap(); // SIGKILL: no destructor, no flush.
        process.wait().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let missing: Vec<_> = released
        .iter()
        .filter(|id| {
            store
                .lookup(id.as_bytes(), SystemTime::UNIX_EPOCH)
                .unwrap()
                .settled
                .is_none()
        })
        .collect();
    assert!(released.len() >= 4500);
    assert!(
        missing.is_empty(),
        "{} released but not durable, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[test]
fn a_message_that_crashes_the_process_is_dead_lettered_as_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut crashes = 0;
    let mut output = Vec::new();
    for _ in 0..6 {
        let process = child("poison", dir.path());
        let result = process.wait_with_output().unwrap();
        output = String::from_utf8_lossy(&result.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if result.status.success() {
            break;
        }
        crashes += 1;
    }
    assert_eq!(
        crashes, 3,
        "the poison message ran max_attempts times, then no more"
    );
    // The test harness prints on the same stdout, so match within lines.
    let said = |text: &str| output.iter().any(|line| line.contains(text));
    assert!(said("dead-letter crash-loop poison"), "{output:?}");
    assert!(
        said("handled ok-2"),
        "the key goes on after the poison message: {output:?}"
    );
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    assert!(store
        .lookup(b"poison", SystemTime::UNIX_EPOCH)
        .unwrap()
        .settled
        .is_some());
}

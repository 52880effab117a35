//! A pipeline running in the background of a broker test, stopped when a condition on
//! its counters holds (or after a minute).
#![allow(dead_code)]

use std::time::Duration;

use seawall::{PipelineHandle, StatsSnapshot};

pub struct Run {
    pub handle: PipelineHandle,
    pub task: tokio::task::JoinHandle<Result<StatsSnapshot, seawall::Error>>,
    pub _dir: tempfile::TempDir,
}

/// Waits (at most a minute) until `done` holds, then shuts down gracefully.
pub async fn stop_when(run: Run, done: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    for _ in 0..1200 {
        if done(&run.handle.stats()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.handle.shutdown();
    run.task.await.unwrap().unwrap()
}

/// Runs a pipeline from `source` to `handler`, dead letters to `sink`, on a sled store in
/// a temporary directory.
pub fn spawn<Src, H, D>(source: Src, sink: D, handler: H, config: seawall::PipelineConfig) -> Run
where
    Src: seawall::Source,
    H: seawall::Handler,
    D: seawall::DeadLetterSink,
{
    let dir = tempfile::tempdir().unwrap();
    let pipeline = seawall::Pipeline::builder()
        .source(source)
        .dead_letter(sink)
        .handler(handler)
        .store(seawall::SledStore::open(dir.path()).unwrap())
        .config(config)
        .build()
        .unwrap();
    Run {
        handle: pipeline.handle(),
        task: tokio::spawn(pipeline.run()),
        _dir: dir,
    }
}

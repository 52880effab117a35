//! `seawall run` and `seawall check`, for the binary: signals, exit codes, printing.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use seawall::admin::Registry;
use seawall::worker::{self, WorkerConfig};

/// Grace beyond the configured deadline before a stuck shutdown is cut short.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// Loads the config, printing a located error and giving exit code 2 when it is bad.
fn load(path: &Path) -> Result<WorkerConfig, ExitCode> {
    worker::load(path).map_err(|err| {
        eprintln!("{err}");
        ExitCode::from(2)
    })
}

pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let deadline = config.shutdown_deadline;
        let registry = Registry::new();
        let report = worker::run_worker(config, registry, stop_signal(deadline)).await?;
        if report.failed.is_empty() {
            tracing::info!("stopped");
            return Ok(ExitCode::SUCCESS);
        }
        for (route, err) in &report.failed {
            eprintln!("route {route} failed: {err}");
        }
        Ok(ExitCode::from(1))
    })
}

/// Resolves at the first SIGTERM or SIGINT. A second signal, or a shutdown that
/// outlasts the deadline, ends the process at once.
async fn stop_signal(deadline: Duration) {
    wait_for_signal().await;
    tokio::spawn(async move {
        tokio::select! {
            _ = wait_for_signal() => {
                eprintln!("second signal: exiting now");
                std::process::exit(130);
            }
            _ = tokio::time::sleep(deadline + SHUTDOWN_MARGIN) => {
                eprintln!("shutdown did not finish within {deadline:?}: exiting now");
                std::process::exit(1);
            }
        }
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the worker runs until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub(crate) fn check(path: &Path, offline: bool) -> anyhow::Result<ExitCode> {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    println!("{}: ok ({} routes)", path.display(), config.routes.len());
    for route in config.routes.values() {
        println!("  routes.{}: {}", route.name, route.summary());
    }
    if offline {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut failed = 0;
    runtime.block_on(async {
        for route in config.routes.values() {
            for probe in worker::probe_route(route).await {
                match probe.outcome {
                    Ok(()) => println!("  {}: {}: reachable", probe.what, probe.target),
                    Err(why) => {
                        failed += 1;
                        println!("  {}: {}: FAILED: {why}", probe.what, probe.target);
                    }
                }
            }
        }
    });
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

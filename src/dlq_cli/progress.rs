//! Replay progress for people: a bar with rate and ETA on a terminal, plain lines (one a
//! second at most) in a log or a pipe.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use seawall::dlq::Progress;

/// Draws progress on stderr.
pub(super) struct ProgressView {
    terminal: bool,
    last_line: Option<Instant>,
}

impl ProgressView {
    pub(super) fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
        }
    }

    pub(super) fn update(&mut self, progress: Progress) {
        let done = progress.sent == progress.total;
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{}\x1b[K", bar_line(&progress));
            if done {
                let _ = writeln!(err);
            }
            return;
        }
        let due = self
            .last_line
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due || done {
            self.last_line = Some(Instant::now());
            let _ = writeln!(err, "seawall dlq: {}", plain_line(&progress));
        }
    }
}

fn eta(progress: &Progress) -> String {
    match progress.eta() {
        Some(eta) => humantime::format_duration(Duration::from_secs(eta.as_secs())).to_string(),
        None => "?".to_owned(),
    }
}

fn bar_line(progress: &Progress) -> String {
    const WIDTH: usize = 30;
    let filled = (progress.sent * WIDTH)
        .checked_div(progress.total)
        .unwrap_or(WIDTH);
    format!(
        "[{}{}] {}/{} {:.0} msg/s ETA {}",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        progress.sent,
        progress.total,
        progress.rate(),
        eta(progress)
    )
}

fn plain_line(progress: &Progress) -> String {
    format!(
        "replayed {}/{} ({:.0} msg/s, ETA {})",
        progress.sent,
        progress.total,
        progress.rate(),
        eta(progress)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_count_rate_and_eta() {
        let progress = Progress {
            sent: 500,
            total: 1500,
            elapsed: Duration::from_secs(5),
        };
        assert_eq!(
            plain_line(&progress),
            "replayed 500/1500 (100 msg/s, ETA 10s)"
        );
        assert!(bar_line(&progress).starts_with("[##########                    ] 500/1500"));
    }
}

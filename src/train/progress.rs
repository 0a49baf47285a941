//! Per-step progress on stderr: a one-line bar redrawn in place on a terminal (loss,
//! accuracy, images/s, ETA), or the same numbers as a plain line at most every
//! [`LINE_EVERY`] when stderr is a file or a pipe (logs, CI, `| tee`).

use std::io::Write;
use std::time::{Duration, Instant};

/// The least time between two plain progress lines (the first step always prints one).
pub const LINE_EVERY: Duration = Duration::from_secs(20);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// Plain lines, at most one per [`LINE_EVERY`].
    Lines,
    Off,
}

pub struct Progress {
    epoch: usize,
    epochs: usize,
    steps: usize,
    style: ProgressStyle,
    start: Instant,
    first: Option<usize>,
    drawn: bool,
    last_line: Option<Instant>,
}

impl Progress {
    pub fn new(epoch: usize, epochs: usize, steps: usize, style: ProgressStyle) -> Progress {
        Progress {
            epoch,
            epochs,
            steps,
            style,
            start: Instant::now(),
            first: None,
            drawn: false,
            last_line: None,
        }
    }

    /// Shows the numbers after batch `done` of the epoch.
    pub fn update(&mut self, done: usize, loss: f64, acc: f64, images_per_s: f64) {
        // The ETA extrapolates from the batches this invocation has run (a resumed epoch
        // starts part-way).
        let first = *self.first.get_or_insert(done.saturating_sub(1));
        let ran = done.saturating_sub(first).max(1) as f64;
        let eta = self.start.elapsed().as_secs_f64() / ran * self.steps.saturating_sub(done) as f64;
        let numbers = format!(
            "{done}/{} loss {loss:.4} acc {acc:.1}% {images_per_s:.1} img/s ETA {}:{:02}",
            self.steps,
            (eta as u64) / 60,
            (eta as u64) % 60
        );
        match self.style {
            ProgressStyle::Bar => {
                let width = 24;
                let filled = (width * done / self.steps.max(1)).min(width);
                eprint!(
                    "\repoch {}/{} [{}{}] {numbers} ",
                    self.epoch + 1,
                    self.epochs,
                    "#".repeat(filled),
                    ".".repeat(width - filled),
                );
                let _ = std::io::stderr().flush();
                self.drawn = true;
            }
            ProgressStyle::Lines => {
                if self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                    eprintln!("epoch {}/{} step {numbers}", self.epoch + 1, self.epochs);
                    self.last_line = Some(Instant::now());
                }
            }
            ProgressStyle::Off => {}
        }
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

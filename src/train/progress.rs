//! A one-line progress bar per epoch on stderr (loss, accuracy, images/s, ETA).

use std::io::Write;
use std::time::Instant;

pub struct Progress {
    epoch: usize,
    epochs: usize,
    steps: usize,
    enabled: bool,
    start: Instant,
    first: Option<usize>,
    drawn: bool,
}

impl Progress {
    pub fn new(epoch: usize, epochs: usize, steps: usize, enabled: bool) -> Progress {
        Progress {
            epoch,
            epochs,
            steps,
            enabled,
            start: Instant::now(),
            first: None,
            drawn: false,
        }
    }

    /// Redraws the bar after batch `done` of the epoch.
    pub fn update(&mut self, done: usize, loss: f64, acc: f64, images_per_s: f64) {
        if !self.enabled {
            return;
        }
        // The ETA extrapolates from the batches this invocation has run (a resumed epoch
        // starts part-way).
        let first = *self.first.get_or_insert(done.saturating_sub(1));
        let ran = done.saturating_sub(first).max(1) as f64;
        let eta = self.start.elapsed().as_secs_f64() / ran * self.steps.saturating_sub(done) as f64;
        let width = 24;
        let filled = (width * done / self.steps.max(1)).min(width);
        eprint!(
            "\repoch {}/{} [{}{}] {done}/{} loss {loss:.4} acc {acc:.1}% {images_per_s:.0} img/s ETA {}:{:02} ",
            self.epoch + 1,
            self.epochs,
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.steps,
            (eta as u64) / 60,
            (eta as u64) % 60
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

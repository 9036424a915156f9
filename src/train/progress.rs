//! How a run shows its progress: a bar on a terminal, plain lines in logs, or nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// How a run shows its progress.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// An `indicatif` bar on stderr (for terminals).
    Bar,
    /// A plain line through the log at most this often (for logs and pipes).
    Lines(Duration),
    /// Nothing between the epoch lines.
    Off,
}

/// Progress display of one epoch.
pub(super) struct EpochProgress {
    pub(super) bar: ProgressBar,
    every: Option<Duration>,
    last_line: Instant,
    start: Instant,
    len: usize,
    epoch: usize,
    epochs: usize,
}

impl EpochProgress {
    pub(super) fn new(progress: Progress, len: usize, epoch: usize, epochs: usize) -> Self {
        let bar = match progress {
            Progress::Bar => {
                let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
                bar
            }
            _ => ProgressBar::hidden(),
        };
        let every = match progress {
            Progress::Lines(d) => Some(d),
            _ => None,
        };
        let now = Instant::now();
        EpochProgress { bar, every, last_line: now, start: now, len, epoch, epochs }
    }

    /// Whether a plain progress line is due (so the losses should be read now).
    pub(super) fn due(&self) -> bool {
        self.every.is_some_and(|e| self.last_line.elapsed() >= e)
    }

    pub(super) fn update(&mut self, done: usize, seen: usize, loss: f64, log: &mut dyn FnMut(&str)) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = seen as f64 / elapsed.max(1e-9);
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("loss {loss:.4}  {rate:.0} sent/s"));
        if self.due() {
            let eta = elapsed / done.max(1) as f64 * (self.len - done) as f64;
            log(&format!(
                "  epoch {}/{} step {done}/{}: loss {loss:.4}, {rate:.1} sentences/s, epoch ETA {}",
                self.epoch + 1,
                self.epochs,
                self.len,
                fmt_duration(eta)
            ));
            self.last_line = Instant::now();
        }
    }
}

/// `75` → `1m15s`, `4000` → `1h06m40s`.
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(42.4), "42s");
        assert_eq!(fmt_duration(75.0), "1m15s");
        assert_eq!(fmt_duration(4000.0), "1h06m40s");
    }
}

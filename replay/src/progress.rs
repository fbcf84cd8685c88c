//! Progress on long runs, and the rate at the end.
//!
//! A bar is drawn on stderr only when stderr is a terminal, so pipes, files
//! and scripts get clean output; stdout is never drawn on.

use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Events,
    Bytes,
}

/// A progress bar (hidden when stderr is not a terminal) and a clock.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    /// A bar for `total` units of work, labelled `what`.
    pub fn new(what: &str, total: u64, unit: Unit) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let template = match unit {
            Unit::Events => {
                "{msg} [{bar:40}] {human_pos}/{human_len} events ({per_sec}, {eta} left)"
            }
            Unit::Bytes => "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// Total work, once it is known.
    pub fn set_total(&self, total: u64) {
        if self.bar.length() != Some(total) {
            self.bar.set_length(total);
        }
    }

    /// Work done so far.
    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Removes the bar; returns the time since the start.
    pub fn finish(&self) -> Duration {
        self.bar.finish_and_clear();
        self.started.elapsed()
    }
}

/// Events over time.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub events: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events in {:.2} s ({} events/s)",
            thousands(self.events),
            self.elapsed.as_secs_f64(),
            thousands(self.per_second().round() as u64)
        )
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_rates_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
        let rate = Rate {
            events: 2_000_000,
            elapsed: Duration::from_millis(500),
        };
        assert_eq!(
            rate.to_string(),
            "2,000,000 events in 0.50 s (4,000,000 events/s)"
        );
    }
}

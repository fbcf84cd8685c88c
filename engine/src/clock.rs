//! Time for the parts of kedai that act on their own (the abandonment
//! scheduler, the message sender) and for the moment a command is decided.
//!
//! The domain never reads a clock; the edges do, through [`Clock`]. In
//! production that is [`SystemClock`]; tests use [`ManualClock`], whose
//! time moves only when the test moves it, so nothing in a test waits for
//! real time to pass.
//!
//! [`Clock::sleep_until`] may return before its deadline (the system clock
//! wakes at least every [`SLEEP_SLICE`] so that a changed wall clock is
//! noticed): callers read the time again and decide what to do.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::event::Timestamp;

/// Longest single sleep of the system clock.
pub const SLEEP_SLICE: Duration = Duration::from_secs(60);

/// Where time comes from.
#[async_trait::async_trait]
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Waits until `deadline` (or a little earlier: see the module docs).
    async fn sleep_until(&self, deadline: Timestamp);
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let left = deadline.0.saturating_sub(self.now().0);
        if left <= 0 {
            return;
        }
        let left = Duration::from_micros(left as u64).min(SLEEP_SLICE);
        tokio::time::sleep(left).await;
    }
}

/// The time `t` plus `d`.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp(t.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
}

/// A clock for tests: it reads what it was set to, and sleepers wake when
/// it is moved past their deadline. It also tells which deadlines are
/// being slept towards, so a test can move time exactly to the next one.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
    /// Bumped on every change of the time or of the sleepers.
    changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct ManualState {
    now: Timestamp,
    /// Deadlines being slept towards, with how many sleepers each.
    sleepers: BTreeMap<Timestamp, usize>,
}

impl ManualClock {
    pub fn new(now: Timestamp) -> Self {
        ManualClock {
            state: Mutex::new(ManualState {
                now,
                sleepers: BTreeMap::new(),
            }),
            changes: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Moves the time to `t` (never backwards).
    pub fn set(&self, t: Timestamp) {
        {
            let mut s = self.lock();
            assert!(t >= s.now, "a manual clock does not go backwards");
            s.now = t;
        }
        self.bump();
    }

    /// Moves the time on by `d`.
    pub fn advance(&self, d: Duration) {
        let t = after(self.now(), d);
        self.set(t);
    }

    /// The earliest deadline something is sleeping towards.
    pub fn next_sleeper(&self) -> Option<Timestamp> {
        self.lock().sleepers.keys().next().copied()
    }

    /// Every deadline being slept towards, earliest first.
    pub fn sleepers(&self) -> Vec<Timestamp> {
        let s = self.lock();
        s.sleepers
            .iter()
            .flat_map(|(t, n)| std::iter::repeat_n(*t, *n))
            .collect()
    }

    /// A receiver that changes whenever the time or the sleepers change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Waits (at most `bound` of real time) until `pred` holds for the
    /// sleepers' deadlines; `false` if it did not.
    pub async fn wait_for_sleepers(
        &self,
        bound: Duration,
        mut pred: impl FnMut(&[Timestamp]) -> bool,
    ) -> bool {
        let mut rx = self.changes();
        let waited = tokio::time::timeout(bound, async {
            loop {
                if pred(&self.sleepers()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        waited.is_ok() && pred(&self.sleepers())
    }
}

/// Takes a sleeper off the list when its sleep ends or is dropped.
struct Sleeper<'a> {
    clock: &'a ManualClock,
    deadline: Timestamp,
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        {
            let mut s = self.clock.lock();
            if let Some(n) = s.sleepers.get_mut(&self.deadline) {
                *n -= 1;
                if *n == 0 {
                    s.sleepers.remove(&self.deadline);
                }
            }
        }
        self.clock.bump();
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.lock().now
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut rx = self.changes();
        {
            let mut s = self.lock();
            if s.now >= deadline {
                return;
            }
            *s.sleepers.entry(deadline).or_default() += 1;
        }
        let _sleeper = Sleeper {
            clock: self,
            deadline,
        };
        self.bump();
        while self.now() < deadline {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const T0: Timestamp = Timestamp(1_760_000_000_000_000);

    #[tokio::test]
    async fn a_manual_sleeper_wakes_only_when_time_reaches_its_deadline() {
        let clock = Arc::new(ManualClock::new(T0));
        let deadline = after(T0, Duration::from_secs(60));
        let sleeper = {
            let clock = Arc::clone(&clock);
            tokio::spawn(async move { clock.sleep_until(deadline).await })
        };
        assert!(
            clock
                .wait_for_sleepers(Duration::from_secs(5), |s| s == [deadline])
                .await
        );
        clock.advance(Duration::from_secs(59));
        // A woken sleeper leaves the list; at 59 s it cannot have.
        assert_eq!(clock.sleepers(), [deadline], "still asleep at 59 s");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke")
            .unwrap();
        assert!(clock.sleepers().is_empty());
    }

    #[tokio::test]
    async fn a_past_deadline_does_not_sleep_and_a_dropped_sleep_leaves_the_list() {
        let clock = ManualClock::new(T0);
        clock.sleep_until(T0).await;
        assert!(clock.sleepers().is_empty());
        let far = after(T0, Duration::from_secs(3_600));
        // Polled once (it registers), then dropped.
        let cancelled = tokio::time::timeout(Duration::ZERO, clock.sleep_until(far)).await;
        assert!(cancelled.is_err(), "the manual clock did not move");
        assert!(clock.sleepers().is_empty(), "the cancelled sleep is gone");
    }

    #[tokio::test]
    async fn the_system_clock_does_not_sleep_for_a_past_deadline() {
        let c = SystemClock;
        let before = c.now();
        tokio::time::timeout(Duration::from_secs(1), c.sleep_until(before))
            .await
            .expect("returns at once");
        assert!(c.now() >= before);
    }
}

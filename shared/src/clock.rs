//! Time as every service of the mesh sees it: the API (token expiry, the keys' stale bound, task
//! timestamps), the emulator (what it stamps into tokens, secret and code expiry) and the caller
//! (refresh timers, retry backoff, job schedules). One [`Clock`] for all, so the mesh holds one
//! clock and the tests one [`ManualClock`] that moves every service at once.
//!
//! Everything that waits does so on the clock with an *absolute* deadline, so tests drive a
//! [`ManualClock`] and never sleep, and a deadline computed before a test advances the clock
//! cannot be pushed back by the advance.
//!
//! Why not `tokio::time::pause()`: the token manager talks to a real (loopback) HTTP server in the
//! integration tests, and a paused runtime auto-advances its clock whenever it is idle waiting for
//! that socket, firing every timeout at once. A clock of our own moves only when told to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> OffsetDateTime;
    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: OffsetDateTime) -> Sleep;
    /// Whole seconds since the Unix epoch: the unit of JWT times (`exp`, `nbf`, `iat`).
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The clock a service is built with, shared by its parts.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The wall clock, with tokio timers for waiting.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// Straight from the system time, without building a date: the token validator reads it on
    /// every request.
    fn unix(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => since.as_secs() as i64,
            // Before the epoch: whole seconds rounded down, as `unix_timestamp` does.
            Err(before) => {
                let before = before.duration();
                -(before.as_secs() as i64) - i64::from(before.subsec_nanos() > 0)
            }
        }
    }

    fn sleep_until(&self, deadline: OffsetDateTime) -> Sleep {
        let wait = to_std(deadline - OffsetDateTime::now_utc());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when [`ManualClock::advance`] is called: for tests and benchmarks.
/// Sleepers watch the current time through a `watch` channel, so an advance wakes every sleeper
/// whose deadline it passes, and none other.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<OffsetDateTime>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: watch::Sender::new(start),
        }
    }

    /// Starting at `unix` seconds since the epoch (out-of-range values start at the epoch).
    pub fn at_unix(unix: i64) -> Self {
        Self::new(OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH))
    }

    /// Starting at the wall clock's time now (whole seconds): for tests that meet a component
    /// stamping with the real time.
    pub fn at_system_time() -> Self {
        Self::at_unix(OffsetDateTime::now_utc().unix_timestamp())
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }

    /// Moves time by `seconds`, backwards too (a host clock stepped back).
    pub fn advance_secs(&self, seconds: i64) {
        self.now
            .send_modify(|now| *now += time::Duration::seconds(seconds));
    }

    /// How many `sleep_until` futures exist (each watches the clock): lets a test wait until a
    /// task has planned its deadline before moving time past it.
    pub fn sleepers(&self) -> usize {
        self.now.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: OffsetDateTime) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever move time again.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// Completes once `duration` has passed on `clock`.
pub fn sleep(clock: &dyn Clock, duration: Duration) -> Sleep {
    clock.sleep_until(clock.now() + duration)
}

/// `future`, or `None` once `duration` has passed on `clock`.
pub async fn timeout<F: Future>(
    clock: &dyn Clock,
    duration: Duration,
    future: F,
) -> Option<F::Output> {
    let deadline = clock.now() + duration;
    tokio::select! {
        output = future => Some(output),
        () = clock.sleep_until(deadline) => None,
    }
}

/// A signed `time::Duration` as a `std` one, negative clamped to zero.
pub fn to_std(duration: time::Duration) -> Duration {
    Duration::try_from(duration).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    fn poll_once(sleep: &mut Sleep) -> Poll<()> {
        sleep.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn manual_sleep_completes_only_once_the_deadline_is_passed() {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH);
        let mut sleep = clock.sleep_until(OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10));
        assert!(poll_once(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(9));
        assert!(poll_once(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(1));
        assert!(poll_once(&mut sleep).is_ready());
    }

    #[test]
    fn the_system_clock_counts_unix_seconds_as_its_date_does() {
        let clock = SystemClock;
        let before = clock.now().unix_timestamp();
        let unix = clock.unix();
        let after = clock.now().unix_timestamp();
        assert!((before..=after).contains(&unix), "{before} {unix} {after}");
    }

    #[test]
    fn unix_seconds_and_moves_both_ways() {
        let clock = ManualClock::at_unix(1_800_000_000);
        assert_eq!(clock.unix(), 1_800_000_000);
        clock.advance_secs(-30);
        assert_eq!(clock.unix(), 1_799_999_970);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.unix(), 1_799_999_971);
        assert!((SystemClock.unix() - OffsetDateTime::now_utc().unix_timestamp()).abs() <= 1);
    }

    #[tokio::test]
    async fn timeout_fires_on_the_manual_clock() {
        let clock = std::sync::Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        let waiting = {
            let clock = clock.clone();
            tokio::spawn(async move {
                timeout(
                    &*clock,
                    Duration::from_secs(5),
                    std::future::pending::<()>(),
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(5));
        assert_eq!(waiting.await.expect("joins"), None);
    }
}

//! Time as the token manager and the scheduler see it. Everything that waits (refresh timers,
//! retry backoff, acquisition timeouts, job schedules) waits on a [`Clock`] with an *absolute*
//! deadline, so tests drive a [`ManualClock`] and never sleep, and a deadline computed before a
//! test advances the clock cannot be pushed back by the advance.
//!
//! Why not `tokio::time::pause()`: the token manager talks to a real (loopback) HTTP server in the
//! integration tests, and a paused runtime auto-advances its clock whenever it is idle waiting for
//! that socket, firing every timeout at once. A clock of our own moves only when told to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> OffsetDateTime;
    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: OffsetDateTime) -> Sleep;
}

/// The wall clock, with tokio timers for waiting.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
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

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
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

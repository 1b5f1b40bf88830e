//! Integration tests of `baton-events`: one conformance suite run against every
//! backend, plus a crash test of the disk backend with a real child process.

#![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

mod conformance;
mod crash;
mod disk;
#[cfg(any(feature = "redis", feature = "nats"))]
mod faults;
mod fuzz;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::time::Duration;

use baton_events::{DiskLog, DiskOptions, EventLog, Fsync, MemoryLog, Options};

/// Opens a backend's log, again and again over the same storage, and supplies the
/// clock the suite runs on.
///
/// In-process backends run under paused tokio time: [`Factory::advance`] moves the
/// clock and durations are used as written. A backend on a real server cannot pause
/// its clock, so it sleeps instead, and [`Factory::scale`] shortens every timeout the
/// suite uses (visibility timeouts, nack delays, retention ages, dedup windows, waits)
/// so that the suite still runs in seconds.
pub trait Factory: Send + 'static {
    /// The log type.
    type Log: EventLog + Clone;
    /// Whether a reopened log sees what the previous one stored.
    const DURABLE: bool;
    /// Whether the tests run under paused tokio time (`start_paused = true`).
    const PAUSED_TIME: bool = true;
    /// Whether delivery state (who holds what, delivery counts) survives a reopen. If it
    /// does, a member's unacknowledged events come back after the visibility timeout
    /// rather than at once.
    const KEEPS_DELIVERY_STATE: bool = false;
    /// Whether the dedup window is also bounded by a count of ids (`Dedup::max_ids`), not
    /// only by age.
    const DEDUP_BY_COUNT: bool = true;
    /// Whether one dedup window covers all of a topic's partitions, so that an id
    /// published again with another key is recognised.
    const DEDUP_ACROSS_PARTITIONS: bool = false;
    /// Opens the log; a previous one must have been closed.
    fn open(&mut self, options: Options) -> impl Future<Output = Self::Log> + Send;
    /// Whether the backend can run here at all (a server backend without a configured
    /// server skips the suite).
    fn available(&self) -> bool {
        true
    }
    /// A duration of the suite as this backend runs it.
    fn scale(&self, d: Duration) -> Duration {
        d
    }
    /// How late a real clock may observe a deadline (zero with paused time).
    fn slack(&self) -> Duration {
        Duration::ZERO
    }
    /// Lets `d` (unscaled) pass.
    fn advance(&self, d: Duration) -> impl Future<Output = ()> + Send {
        let d = self.scale(d);
        async move {
            if Self::PAUSED_TIME {
                tokio::time::advance(d).await;
            } else {
                tokio::time::sleep(d).await;
            }
        }
    }
}

/// A fresh [`MemoryLog`] per open.
pub struct Memory;

impl Factory for Memory {
    type Log = MemoryLog;
    const DURABLE: bool = false;
    async fn open(&mut self, options: Options) -> MemoryLog {
        MemoryLog::new(options).expect("valid options")
    }
}

/// A [`DiskLog`] in one temporary directory.
pub struct Disk {
    /// Where the log lives; removed on drop.
    pub dir: tempfile::TempDir,
    /// The fsync policy under test.
    pub fsync: Fsync,
}

impl Disk {
    /// A log in a new temporary directory.
    pub fn new(fsync: Fsync) -> Self {
        Disk {
            dir: tempfile::tempdir().expect("temp dir"),
            fsync,
        }
    }
}

impl Factory for Disk {
    type Log = DiskLog;
    const DURABLE: bool = true;
    async fn open(&mut self, options: Options) -> DiskLog {
        DiskLog::open(
            self.dir.path(),
            DiskOptions {
                log: options,
                fsync: self.fsync,
                segment_bytes: 64 << 10,
                // No background timer: with paused time it would make the clock jump.
                maintenance_interval: None,
            },
        )
        .await
        .expect("open disk log")
    }
}

/// Runs every conformance test against one backend: under paused time by default, on
/// the real clock with `real_time` (server backends).
macro_rules! conformance {
    ($name:ident, $factory:expr) => {
        conformance!($name, $factory, tokio::test(start_paused = true));
    };
    ($name:ident, $factory:expr, real_time) => {
        conformance!($name, $factory, tokio::test);
    };
    ($name:ident, $factory:expr, $test:meta) => {
        mod $name {
            use super::*;

            macro_rules! case {
                ($case:ident) => {
                    #[$test]
                    async fn $case() {
                        let f = $factory;
                        if !Factory::available(&f) {
                            return;
                        }
                        crate::conformance::$case(f).await;
                    }
                };
            }

            case!(ordering_per_key);
            case!(at_least_once_delivery);
            case!(redelivery_after_visibility_timeout);
            case!(nack_redelivers_after_delay);
            case!(dead_letters_after_max_deliveries);
            case!(redrive_moves_dead_letters_back);
            case!(redrive_again_is_deduplicated);
            case!(dedup_across_partitions);
            case!(dedup_window);
            case!(retention_by_count_bytes_and_age);
            case!(restart_keeps_events_and_committed_offsets);
            case!(replay_from_offset_and_time);
            case!(limits_reject_oversized_input);
            case!(pending_list_is_inspectable);
            case!(topics_and_groups_are_reported);
            case!(invalid_names_are_rejected);
            case!(poll_waits_for_new_events);
            case!(closed_log_refuses_calls);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_producers_and_group() {
                let f = $factory;
                if !Factory::available(&f) {
                    return;
                }
                crate::conformance::concurrent_producers_and_group(f).await;
            }
        }
    };
}

conformance!(memory, Memory);
conformance!(disk_always, Disk::new(Fsync::Always));
conformance!(disk_never, Disk::new(Fsync::Never));
conformance!(
    disk_interval,
    Disk::new(Fsync::Interval(Duration::from_millis(5)))
);
#[cfg(feature = "nats")]
conformance!(nats_jetstream, nats::Nats::new(), real_time);
#[cfg(feature = "redis")]
conformance!(redis_streams, redis::Redis::new(), real_time);

//! Rate limits per caller: requests per second on every `/api` route, and
//! events per second on publishes, as token buckets holding one second of
//! each (the burst). A token's own limits (`baton token create --rps N
//! --events-per-sec N`) win over the server's defaults (`[server]
//! rate_limit_rps`, `rate_limit_events_per_sec`); the admin token is never
//! limited, so an operator can act on a server under load. A caller over
//! its limit is answered 429 `rate-limited` with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tokens::{Caller, Rate};

/// One second of `rate`, refilled continuously.
#[derive(Debug)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    /// Takes `n`, or says how long until it could.
    fn take(&mut self, n: f64, rate: f64, now: Instant) -> Result<(), Duration> {
        self.level = (self.level + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.level >= n {
            self.level -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.level) / rate))
        }
    }
}

/// Why a call is refused.
#[derive(Debug, PartialEq)]
pub enum Over {
    /// Over the limit now: try again after this long.
    Wait {
        /// What was exceeded (`requests` or `events`) and its rate.
        what: &'static str,
        /// The limit, per second.
        rate: f64,
        /// How long until it would pass.
        after: Duration,
    },
    /// More events in one publish than one second of the limit: it never
    /// passes; send smaller batches.
    Never {
        /// The limit, events per second.
        rate: f64,
    },
}

/// Every caller's buckets.
pub(crate) struct Limits {
    default: Rate,
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
}

impl Limits {
    pub(crate) fn new(default: Rate) -> Limits {
        Limits {
            default,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limits that apply to `caller`.
    fn rate(&self, caller: &Caller) -> Rate {
        match caller {
            Caller::Admin => Rate::default(),
            Caller::Anonymous => self.default,
            Caller::Token(t) => Rate {
                requests_per_sec: t.rate.requests_per_sec.or(self.default.requests_per_sec),
                events_per_sec: t.rate.events_per_sec.or(self.default.events_per_sec),
            },
        }
    }

    fn take(&self, caller: &Caller, what: &'static str, rate: f64, n: f64) -> Result<(), Over> {
        if n > rate {
            return Err(Over::Never { rate });
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .entry((caller.id().to_string(), what))
            .or_insert(Bucket {
                level: rate,
                at: now,
            });
        bucket
            .take(n, rate, now)
            .map_err(|after| Over::Wait { what, rate, after })
    }

    /// A request of `caller`.
    pub(crate) fn request(&self, caller: &Caller) -> Result<(), Over> {
        match self.rate(caller).requests_per_sec {
            None => Ok(()),
            Some(rate) => self.take(caller, "requests", rate, 1.0),
        }
    }

    /// `n` events published by `caller`.
    pub(crate) fn events(&self, caller: &Caller, n: usize) -> Result<(), Over> {
        match self.rate(caller).events_per_sec {
            None => Ok(()),
            Some(rate) => self.take(caller, "events", rate, n as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

    use super::*;

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_its_rate() {
        let start = Instant::now();
        let mut b = Bucket {
            level: 10.0,
            at: start,
        };
        assert!(b.take(10.0, 10.0, start).is_ok());
        let wait = b.take(1.0, 10.0, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Half a second later, five more; never more than one second's worth.
        assert!(
            b.take(5.0, 10.0, start + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            b.take(1.0, 10.0, start + Duration::from_millis(500))
                .is_err()
        );
        assert!(b.take(10.0, 10.0, start + Duration::from_secs(60)).is_ok());
        assert!(b.take(1.0, 10.0, start + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn the_admin_is_never_limited_and_a_batch_over_a_second_never_passes() {
        let limits = Limits::new(Rate {
            requests_per_sec: Some(1.0),
            events_per_sec: Some(100.0),
        });
        for _ in 0..100 {
            assert!(limits.request(&Caller::Admin).is_ok());
        }
        assert!(limits.request(&Caller::Anonymous).is_ok());
        assert!(matches!(
            limits.request(&Caller::Anonymous),
            Err(Over::Wait {
                what: "requests",
                ..
            })
        ));
        assert_eq!(
            limits.events(&Caller::Anonymous, 101),
            Err(Over::Never { rate: 100.0 })
        );
        assert!(limits.events(&Caller::Anonymous, 100).is_ok());
    }
}

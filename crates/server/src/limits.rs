//! Rate limits per caller: requests per second on every `/api` route, and
//! events per second on publishes, as token buckets holding one second of
//! each (the burst). A token's own limits (`baton token create --rps N
//! --events-per-sec N`) win over the server's defaults (`[server]
//! rate_limit_rps`, `rate_limit_events_per_sec`); the admin token is never
//! limited, so an operator can act on a server under load. A caller over
//! its limit is answered 429 `rate-limited` with `Retry-After`.
//!
//! A tenant's quotas (`[tenants.NAME]` of `baton.toml`) hold for all its
//! tokens together, on top of each token's own: requests and events per
//! second, and runs executing at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::tokens::{Caller, Rate};

/// A tenant's quotas, shared by all its tokens; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per second (every `/api` route).
    pub requests_per_sec: Option<f64>,
    /// Events per second published.
    pub events_per_sec: Option<f64>,
    /// Runs executing (running, paused or compensating) at once, on this
    /// instance: one more is answered 429.
    pub max_concurrent_runs: Option<u32>,
}

impl Quota {
    /// What is wrong with it, if anything.
    pub fn check(&self) -> Result<(), String> {
        let rates = [self.requests_per_sec, self.events_per_sec];
        if rates.iter().flatten().any(|r| !(r.is_finite() && *r > 0.0)) {
            return Err("requests_per_sec and events_per_sec must be above 0".into());
        }
        if self.max_concurrent_runs == Some(0) {
            return Err("max_concurrent_runs must be at least 1".into());
        }
        Ok(())
    }
}

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
        /// Whose limit: the caller's, or its tenant's (by name).
        tenant: Option<String>,
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
        /// Whose limit: the caller's, or its tenant's (by name).
        tenant: Option<String>,
        /// The limit, events per second.
        rate: f64,
    },
    /// The tenant has as many runs executing as its quota allows.
    Runs {
        /// The tenant.
        tenant: String,
        /// Its quota.
        max: u32,
    },
}

/// Every caller's and tenant's buckets.
pub(crate) struct Limits {
    default: Rate,
    tenants: BTreeMap<String, Quota>,
    /// Keyed by a caller's id, or `tenant:` and a tenant's name.
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
    /// One per tenant with a run quota: held from counting its runs to
    /// starting one, so two requests cannot both take the last place.
    starting: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

impl Limits {
    pub(crate) fn new(default: Rate, tenants: BTreeMap<String, Quota>) -> Limits {
        let starting = tenants
            .iter()
            .filter(|(_, q)| q.max_concurrent_runs.is_some())
            .map(|(t, _)| (t.clone(), Arc::default()))
            .collect();
        Limits {
            default,
            tenants,
            buckets: Mutex::new(HashMap::new()),
            starting,
        }
    }

    /// The run quota of `tenant`, with the lock to hold while starting one.
    pub(crate) fn run_quota(&self, tenant: &str) -> Option<(u32, Arc<tokio::sync::Mutex<()>>)> {
        let max = self.tenants.get(tenant)?.max_concurrent_runs?;
        Some((max, self.starting.get(tenant)?.clone()))
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

    /// Takes `n` of `what` from the caller's bucket at `rate` (if any),
    /// then from its tenant's (if it has a quota for it).
    fn take(
        &self,
        caller: &Caller,
        what: &'static str,
        rate: Option<f64>,
        quota: impl Fn(&Quota) -> Option<f64>,
        n: f64,
    ) -> Result<(), Over> {
        let tenant = caller
            .tenant()
            .and_then(|t| Some((t, quota(self.tenants.get(t)?)?)));
        let own = rate.map(|rate| (caller.id().to_string(), None, rate));
        let shared = tenant.map(|(t, rate)| (format!("tenant:{t}"), Some(t.to_string()), rate));
        let now = Instant::now();
        for (key, tenant, rate) in own.into_iter().chain(shared) {
            if n > rate {
                return Err(Over::Never { tenant, rate });
            }
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let bucket = buckets.entry((key, what)).or_insert(Bucket {
                level: rate,
                at: now,
            });
            bucket.take(n, rate, now).map_err(|after| Over::Wait {
                tenant,
                what,
                rate,
                after,
            })?;
        }
        Ok(())
    }

    /// A request of `caller`.
    pub(crate) fn request(&self, caller: &Caller) -> Result<(), Over> {
        let rate = self.rate(caller).requests_per_sec;
        self.take(caller, "requests", rate, |q| q.requests_per_sec, 1.0)
    }

    /// `n` events published by `caller`.
    pub(crate) fn events(&self, caller: &Caller, n: usize) -> Result<(), Over> {
        let rate = self.rate(caller).events_per_sec;
        self.take(caller, "events", rate, |q| q.events_per_sec, n as f64)
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
        let limits = Limits::new(
            Rate {
                requests_per_sec: Some(1.0),
                events_per_sec: Some(100.0),
            },
            BTreeMap::new(),
        );
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
            Err(Over::Never {
                tenant: None,
                rate: 100.0
            })
        );
        assert!(limits.events(&Caller::Anonymous, 100).is_ok());
    }

    fn token(id: &str, tenant: &str) -> Caller {
        Caller::Token(Arc::new(crate::tokens::TokenInfo {
            id: id.into(),
            name: String::new(),
            scopes: vec![crate::tokens::Scope::EventsPublish],
            created_ms: 0,
            expires_ms: None,
            sha256: String::new(),
            rate: Rate::default(),
            tenant: Some(tenant.into()),
        }))
    }

    /// A tenant's quota holds for its tokens together; another tenant's
    /// tokens and callers without a tenant are not counted in it.
    #[test]
    fn a_tenants_quota_is_shared_by_its_tokens() {
        let quota = Quota {
            requests_per_sec: Some(3.0),
            events_per_sec: Some(10.0),
            max_concurrent_runs: Some(2),
        };
        let limits = Limits::new(
            Rate::default(),
            BTreeMap::from([("acme".to_string(), quota)]),
        );
        let (a, b) = (token("0000000a", "acme"), token("0000000b", "acme"));
        assert!(limits.request(&a).is_ok());
        assert!(limits.request(&b).is_ok());
        assert!(limits.request(&a).is_ok());
        let over = limits.request(&b).unwrap_err();
        assert!(
            matches!(&over, Over::Wait { tenant: Some(t), what: "requests", .. } if t == "acme"),
            "{over:?}"
        );
        let other = token("0000000c", "bolt");
        for _ in 0..10 {
            assert!(limits.request(&other).is_ok());
            assert!(limits.request(&Caller::Anonymous).is_ok());
        }
        assert!(limits.events(&a, 6).is_ok());
        assert!(limits.events(&b, 5).is_err());
        assert!(matches!(
            limits.events(&b, 11),
            Err(Over::Never {
                tenant: Some(_),
                rate: 10.0
            })
        ));
        assert_eq!(limits.run_quota("acme").map(|q| q.0), Some(2));
        assert!(limits.run_quota("bolt").is_none());
        assert!(quota.check().is_ok());
        let zero = Quota {
            max_concurrent_runs: Some(0),
            ..Quota::default()
        };
        assert!(zero.check().is_err());
    }
}

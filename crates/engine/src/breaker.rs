//! A circuit breaker per agent: closed → open when too many of the recent calls
//! failed, open → half-open after a cooldown, half-open → closed on one success or
//! back to open on a failure.

use baton_model::BreakerPolicy;
use tokio::time::Instant;

/// A breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are refused until the cooldown has passed.
    Open,
    /// One probe call is allowed; its outcome decides.
    HalfOpen,
}

impl State {
    /// The state's name (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// The breaker of one agent.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    /// The outcomes of the last `window` calls, newest at the low bit… kept as a
    /// ring of bits so recording is O(1).
    ring: Vec<u64>,
    next: u32,
    calls: u32,
    failures: u32,
    state: State,
    opened_at: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Breaker {
        let window = policy.window.max(1);
        Breaker {
            ring: vec![0; (window as usize).div_ceil(64)],
            policy: BreakerPolicy { window, ..policy },
            next: 0,
            calls: 0,
            failures: 0,
            state: State::Closed,
            opened_at: None,
            probing: false,
        }
    }

    /// The state at `now` (an open breaker whose cooldown has passed is half-open).
    pub fn state(&self, now: Instant) -> State {
        match (self.state, self.opened_at) {
            (State::Open, Some(at)) if now >= at + self.policy.cooldown => State::HalfOpen,
            (s, _) => s,
        }
    }

    /// Whether a call may start now. A half-open breaker lets one probe through and
    /// refuses the rest until the probe's outcome is recorded.
    pub fn allows(&self, now: Instant) -> bool {
        match self.state(now) {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen => !self.probing,
        }
    }

    /// Records that a call started (marks the probe of a half-open breaker).
    pub fn started(&mut self, now: Instant) {
        if self.state(now) == State::HalfOpen {
            self.state = State::HalfOpen;
            self.probing = true;
        }
    }

    /// Records a call's outcome; returns the new state when it changed.
    pub fn record(&mut self, ok: bool, now: Instant) -> Option<State> {
        let before = self.state(now);
        if before == State::HalfOpen || self.probing {
            self.probing = false;
            if ok {
                self.reset();
                self.state = State::Closed;
                self.opened_at = None;
            } else {
                self.state = State::Open;
                self.opened_at = Some(now);
            }
            return (self.state != before).then_some(self.state);
        }
        if before == State::Open {
            // A call that started before the breaker opened: it does not count.
            return None;
        }
        let window = self.policy.window;
        let (word, bit) = ((self.next / 64) as usize, self.next % 64);
        let old_failed = self.calls == window && self.ring[word] & (1 << bit) != 0;
        if self.calls < window {
            self.calls += 1;
        }
        if old_failed {
            self.failures -= 1;
        }
        if ok {
            self.ring[word] &= !(1 << bit);
        } else {
            self.ring[word] |= 1 << bit;
            self.failures += 1;
        }
        self.next = (self.next + 1) % window;
        let rate = f64::from(self.failures) / f64::from(self.calls);
        if self.calls >= self.policy.min_calls && rate >= self.policy.failure_rate {
            self.state = State::Open;
            self.opened_at = Some(now);
            self.reset();
            return Some(State::Open);
        }
        None
    }

    fn reset(&mut self) {
        self.ring.iter_mut().for_each(|w| *w = 0);
        self.next = 0;
        self.calls = 0;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_rate: 0.5,
            window: 10,
            min_calls: 4,
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn opens_only_after_min_calls_at_the_failure_rate() {
        let t = Instant::now();
        let mut b = Breaker::new(policy());
        assert_eq!(b.record(false, t), None);
        assert_eq!(b.record(false, t), None);
        assert_eq!(b.record(true, t), None);
        assert!(b.allows(t));
        // 4 calls, 3 failed: 75 % ≥ 50 %.
        assert_eq!(b.record(false, t), Some(State::Open));
        assert!(!b.allows(t));
    }

    #[test]
    fn the_window_forgets_old_failures() {
        let t = Instant::now();
        let mut b = Breaker::new(BreakerPolicy {
            window: 4,
            min_calls: 4,
            ..policy()
        });
        for ok in [false, true, true, true, true, true] {
            assert_eq!(b.record(ok, t), None);
        }
        // Window now holds 4 successes; one failure is 25 %.
        assert_eq!(b.record(false, t), None);
        assert_eq!(b.record(false, t), Some(State::Open));
    }

    #[test]
    fn half_open_lets_one_probe_and_its_outcome_decides() {
        let t = Instant::now();
        let mut b = Breaker::new(BreakerPolicy {
            min_calls: 1,
            ..policy()
        });
        assert_eq!(b.record(false, t), Some(State::Open));
        let later = t + Duration::from_secs(30);
        assert_eq!(b.state(later - Duration::from_millis(1)), State::Open);
        assert_eq!(b.state(later), State::HalfOpen);
        assert!(b.allows(later));
        b.started(later);
        assert!(!b.allows(later), "only one probe");
        assert_eq!(b.record(false, later), Some(State::Open));
        assert!(!b.allows(later + Duration::from_secs(29)));
        let again = later + Duration::from_secs(30);
        b.started(again);
        assert_eq!(b.record(true, again), Some(State::Closed));
        assert!(b.allows(again));
    }

    #[test]
    fn late_outcomes_while_open_do_not_count() {
        let t = Instant::now();
        let mut b = Breaker::new(BreakerPolicy {
            min_calls: 1,
            ..policy()
        });
        b.record(false, t);
        assert_eq!(b.record(true, t), None);
        assert_eq!(b.state(t), State::Open);
    }
}

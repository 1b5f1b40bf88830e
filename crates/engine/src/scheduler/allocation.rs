//! Allocation: which agent takes a job. A pure function of the candidates,
//! their breakers and their load, so the rule is seen and tested on its own.

use tokio::time::Instant;

use super::AgentSlot;

/// Where a job goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allocation {
    /// To this agent (an index into the registry), which has room.
    Agent(u16),
    /// Every candidate that may take a call is at its concurrency limit: the
    /// job waits in the queue of the least busy one (taken when a call of that
    /// agent ends).
    Wait(u16),
    /// Every candidate's circuit breaker refuses calls.
    Refused,
}

/// The least loaded candidate (calls in flight over concurrency) whose breaker
/// allows a call and that has room; ties go to the first candidate. `candidates`
/// are registry indices, in the task's order.
pub(super) fn allocate(
    candidates: impl Iterator<Item = u16>,
    agents: &[AgentSlot],
    now: Instant,
) -> Allocation {
    let mut best: Option<(u16, f64)> = None;
    let mut least_busy: Option<(u16, u32)> = None;
    for global in candidates {
        let a = &agents[usize::from(global)];
        if a.breaker.as_ref().is_some_and(|b| !b.allows(now)) {
            continue;
        }
        if least_busy.is_none_or(|(_, n)| a.in_flight < n) {
            least_busy = Some((global, a.in_flight));
        }
        if a.in_flight < a.concurrency {
            let load = f64::from(a.in_flight) / f64::from(a.concurrency);
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((global, load));
            }
        }
    }
    match (best, least_busy) {
        (Some((agent, _)), _) => Allocation::Agent(agent),
        (None, Some((agent, _))) => Allocation::Wait(agent),
        (None, None) => Allocation::Refused,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    use baton_model::BreakerPolicy;

    use super::*;
    use crate::agent::Noop;
    use crate::breaker::Breaker;

    fn agent(concurrency: u32, in_flight: u32, breaker: Option<Breaker>) -> AgentSlot {
        AgentSlot {
            name: String::new(),
            kind: "noop".into(),
            concurrency,
            in_flight,
            calls: 0,
            failures: 0,
            breaker,
            runner: Arc::new(Noop),
            waiting: VecDeque::new(),
        }
    }

    /// A breaker that one failure opens.
    fn open_breaker(now: Instant) -> Breaker {
        let mut b = Breaker::new(BreakerPolicy {
            failure_rate: 1.0,
            window: 1,
            min_calls: 1,
            cooldown: Duration::from_secs(60),
        });
        b.started(now);
        b.record(false, now);
        assert!(!b.allows(now));
        b
    }

    #[test]
    fn the_least_loaded_agent_with_room_wins_ties_to_the_first() {
        let now = Instant::now();
        let agents = [agent(4, 2, None), agent(2, 0, None), agent(10, 5, None)];
        assert_eq!(
            allocate([0, 1, 2].into_iter(), &agents, now),
            Allocation::Agent(1)
        );
        // 2/4 and 5/10 load the same: the first candidate listed.
        assert_eq!(
            allocate([2, 0].into_iter(), &agents, now),
            Allocation::Agent(2)
        );
        assert_eq!(
            allocate([0, 2].into_iter(), &agents, now),
            Allocation::Agent(0)
        );
    }

    #[test]
    fn full_agents_make_the_job_wait_on_the_least_busy() {
        let now = Instant::now();
        let agents = [agent(3, 3, None), agent(1, 1, None), agent(2, 2, None)];
        assert_eq!(
            allocate([0, 1, 2].into_iter(), &agents, now),
            Allocation::Wait(1)
        );
    }

    #[test]
    fn open_breakers_are_passed_over_and_all_open_refuses() {
        let now = Instant::now();
        let agents = [agent(8, 0, Some(open_breaker(now))), agent(8, 7, None)];
        assert_eq!(
            allocate([0, 1].into_iter(), &agents, now),
            Allocation::Agent(1)
        );
        assert_eq!(allocate([0].into_iter(), &agents, now), Allocation::Refused);
        assert_eq!(
            allocate(std::iter::empty(), &agents, now),
            Allocation::Refused
        );
    }
}

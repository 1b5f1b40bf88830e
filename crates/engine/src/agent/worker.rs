//! `worker` agents: calls wait in a pool until a worker (any process, in any
//! language, through the HTTP API) polls for them. A polled call is *leased*: the
//! worker must complete, fail or heartbeat it before the lease expires, or the
//! call goes back to the pool for the next poll (at-least-once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::{Call, Failure, Outcome, Runner, Started};

/// A call handed to a worker.
#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    /// The lease's id: what the worker completes, fails or heartbeats.
    pub id: String,
    /// The run.
    pub run: String,
    /// The task's id.
    pub task: String,
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// What the agent is given (see the engine's docs).
    pub input: Value,
    /// When the lease expires unless extended, Unix milliseconds.
    pub lease_expires_ms: u64,
}

/// Why a worker's report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No lease with this id: never given, or already reported.
    #[error("no task leased with id {0} (it was completed or failed, or never leased)")]
    UnknownLease(String),
    /// The lease expired: the call went back to the pool (and maybe to another
    /// worker); this worker's result is not taken.
    #[error("the lease {0} expired; the task was handed back for another worker")]
    Expired(String),
}

struct Waiting {
    call: Call,
    reply: oneshot::Sender<Outcome>,
}

struct Leased {
    agent: String,
    worker: Arc<str>,
    expires: Instant,
    waiting: Waiting,
}

/// What the pool knows of a worker (by the name it polls with).
struct Seen {
    /// The agents it polled for (the first [`AGENTS_PER_WORKER`]).
    agents: Vec<String>,
    /// Its polls waiting now.
    polling: u32,
    /// When it last polled (or a poll of it returned).
    last_seen: Instant,
    last_seen_ms: u64,
}

/// Workers not seen for this long (and not polling) are forgotten.
const FORGET_WORKERS_AFTER: Duration = Duration::from_secs(300);
/// Workers remembered at most (the oldest forgotten first).
const REMEMBER_WORKERS: usize = 1024;
/// Agents listed per worker.
const AGENTS_PER_WORKER: usize = 32;

#[derive(Default)]
struct Pool {
    queues: HashMap<String, VecDeque<Waiting>>,
    leased: HashMap<u128, Leased>,
    workers: HashMap<Arc<str>, Seen>,
    /// Recently expired leases, to tell a late worker why it was refused.
    expired: VecDeque<u128>,
    next: u64,
}

/// Lease ids: 128 bits no one can guess from the ids they were given, two
/// keyed SipHash values of a counter (std seeds each `RandomState` from the
/// operating system's random source), written as 32 hex digits.
struct LeaseIds([std::hash::RandomState; 2]);

impl LeaseIds {
    fn get() -> &'static LeaseIds {
        static IDS: std::sync::OnceLock<LeaseIds> = std::sync::OnceLock::new();
        IDS.get_or_init(|| LeaseIds([std::hash::RandomState::new(), std::hash::RandomState::new()]))
    }

    fn make(&self, n: u64) -> u128 {
        use std::hash::BuildHasher as _;
        (u128::from(self.0[0].hash_one(n)) << 64) | u128::from(self.0[1].hash_one(n))
    }
}

/// The key of a lease id as given out (exactly 32 hex digits).
fn key_of(id: &str) -> Option<u128> {
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(id, 16).ok())
        .flatten()
}

/// Expired lease ids remembered for late reports.
const REMEMBER_EXPIRED: usize = 4096;

/// The pool of calls waiting for workers, shared by the `worker` agents of one
/// engine (its [`Options::workers`](crate::Options::workers)): the workers that
/// poll an engine's server see that engine's calls only.
#[derive(Default)]
pub struct Workers {
    pool: Mutex<Pool>,
    arrived: Notify,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pool = self.pool();
        f.debug_struct("Workers")
            .field("queues", &pool.queues.len())
            .field("leased", &pool.leased.len())
            .finish()
    }
}

impl Workers {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, agent: &str, waiting: Waiting) {
        self.pool()
            .queues
            .entry(agent.to_string())
            .or_default()
            .push_back(waiting);
        self.arrived.notify_waiters();
    }

    /// Returns expired leases to their queues (front first: they waited longest).
    fn expire(pool: &mut Pool, now: Instant) {
        let expired: Vec<u128> = pool
            .leased
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(l) = pool.leased.remove(&id) {
                pool.queues
                    .entry(l.agent)
                    .or_default()
                    .push_front(l.waiting);
                if pool.expired.len() == REMEMBER_EXPIRED {
                    pool.expired.pop_front();
                }
                pool.expired.push_back(id);
            }
        }
    }

    fn take(&self, agent: &str, worker: &Arc<str>, max: usize, lease: Duration) -> Vec<Assignment> {
        let now = Instant::now();
        let mut pool = self.pool();
        Self::expire(&mut pool, now);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(waiting) = pool.queues.get_mut(agent).and_then(|q| q.pop_front()) else {
                break;
            };
            // A call whose run stopped waiting (cancelled, timed out) is dropped.
            if waiting.reply.is_closed() {
                continue;
            }
            pool.next += 1;
            let id = LeaseIds::get().make(pool.next);
            let lease_expires_ms = crate::clock::now_ms() + lease.as_millis() as u64;
            out.push(Assignment {
                id: format!("{id:032x}"),
                run: waiting.call.run.to_string(),
                task: waiting.call.task.to_string(),
                attempt: waiting.call.attempt,
                input: waiting.call.input.clone(),
                lease_expires_ms,
            });
            pool.leased.insert(
                id,
                Leased {
                    agent: agent.to_string(),
                    worker: worker.clone(),
                    expires: now + lease,
                    waiting,
                },
            );
        }
        out
    }

    /// Up to `max` calls for `agent`, waiting up to `wait` for one to arrive; each
    /// is leased for `lease` to `worker` (the name a worker process polls
    /// with, shown in [`Workers::snapshot`]).
    pub async fn poll(
        &self,
        agent: &str,
        worker: &str,
        max: usize,
        wait: Duration,
        lease: Duration,
    ) -> Vec<Assignment> {
        let worker = self.polling(agent, worker);
        // Counted out however the poll ends (a dropped request included).
        let _done = PollDone(self, worker.clone());
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let got = self.take(agent, &worker, max.max(1), lease);
            if !got.is_empty() {
                return got;
            }
            // Wake for new calls, and now and then for leases that expire.
            let tick = Instant::now() + Duration::from_millis(250);
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(deadline.min(tick)) => {}
            }
            if Instant::now() >= deadline {
                return self.take(agent, &worker, max.max(1), lease);
            }
        }
    }

    /// Records a poll of `worker` for `agent` starting; answers its shared name.
    fn polling(&self, agent: &str, worker: &str) -> Arc<str> {
        let now = Instant::now();
        let mut pool = self.pool();
        if pool.workers.len() >= REMEMBER_WORKERS && !pool.workers.contains_key(worker) {
            Self::forget_workers(&mut pool, now);
        }
        let name: Arc<str> = match pool.workers.get_key_value(worker) {
            Some((name, _)) => name.clone(),
            None => Arc::from(worker),
        };
        let seen = pool.workers.entry(name.clone()).or_insert_with(|| Seen {
            agents: Vec::new(),
            polling: 0,
            last_seen: now,
            last_seen_ms: 0,
        });
        seen.polling += 1;
        seen.last_seen = now;
        seen.last_seen_ms = crate::clock::now_ms();
        if seen.agents.len() < AGENTS_PER_WORKER && !seen.agents.iter().any(|a| a == agent) {
            seen.agents.push(agent.to_string());
        }
        name
    }

    /// Forgets workers idle for [`FORGET_WORKERS_AFTER`], then, if there are
    /// still too many, the idle ones seen longest ago.
    fn forget_workers(pool: &mut Pool, now: Instant) {
        pool.workers
            .retain(|_, s| s.polling > 0 || now.duration_since(s.last_seen) < FORGET_WORKERS_AFTER);
        if pool.workers.len() >= REMEMBER_WORKERS {
            let mut idle: Vec<(Instant, Arc<str>)> = pool
                .workers
                .iter()
                .filter(|(_, s)| s.polling == 0)
                .map(|(n, s)| (s.last_seen, n.clone()))
                .collect();
            idle.sort_unstable();
            let excess = pool.workers.len() + 1 - REMEMBER_WORKERS;
            for (_, name) in idle.into_iter().take(excess) {
                pool.workers.remove(&name);
            }
        }
    }

    /// The pool as people look at it: per agent, calls waiting and leased; the
    /// workers seen in the last minutes; and up to `max_leases` leases, the
    /// soonest to expire first. Lease ids are not shown: they let whoever holds
    /// one report the call.
    pub fn snapshot(&self, max_leases: usize) -> Snapshot {
        let now = Instant::now();
        let now_ms = crate::clock::now_ms();
        let mut pool = self.pool();
        Self::expire(&mut pool, now);
        Self::forget_workers(&mut pool, now);
        let agents = Self::depths_of(&pool);
        let mut held: HashMap<&str, u32> = HashMap::new();
        for l in pool.leased.values() {
            *held.entry(&l.worker).or_default() += 1;
        }
        let mut workers: Vec<WorkerView> = pool
            .workers
            .iter()
            .map(|(name, s)| WorkerView {
                name: name.to_string(),
                agents: s.agents.clone(),
                polling: s.polling,
                leases: held.get(&**name).copied().unwrap_or(0),
                last_seen_ms: s.last_seen_ms,
            })
            .collect();
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut leases: Vec<(Instant, &Leased)> =
            pool.leased.values().map(|l| (l.expires, l)).collect();
        leases.sort_unstable_by_key(|(expires, _)| *expires);
        let leases = leases
            .into_iter()
            .take(max_leases)
            .map(|(expires, l)| LeaseView {
                agent: l.agent.clone(),
                worker: l.worker.to_string(),
                run: l.waiting.call.run.to_string(),
                task: l.waiting.call.task.to_string(),
                attempt: l.waiting.call.attempt,
                expires_ms: now_ms + expires.saturating_duration_since(now).as_millis() as u64,
            })
            .collect();
        Snapshot {
            agents,
            workers,
            leases,
            leased: pool.leased.len(),
        }
    }

    fn settle(&self, id: &str) -> Result<Leased, Error> {
        let unknown = || Error::UnknownLease(id.to_string());
        let key = key_of(id).ok_or_else(unknown)?;
        let now = Instant::now();
        let mut pool = self.pool();
        Self::expire(&mut pool, now);
        match pool.leased.remove(&key) {
            Some(l) => Ok(l),
            None if pool.expired.contains(&key) => Err(Error::Expired(id.to_string())),
            None => Err(unknown()),
        }
    }

    /// Whether lease `id` (live or just expired) is of a call of `tenant`'s
    /// (its agent's queue is `<tenant>/…`, see [`queue`]): a tenant's
    /// workers report their tenant's calls only.
    pub fn of_tenant(&self, id: &str, tenant: &str) -> bool {
        let Some(key) = key_of(id) else {
            return false;
        };
        self.pool().leased.get(&key).is_some_and(|l| {
            l.agent
                .strip_prefix(tenant)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Extends a lease by `lease` from now.
    pub fn heartbeat(&self, id: &str, lease: Duration) -> Result<(), Error> {
        let mut l = self.settle(id)?;
        l.expires = Instant::now() + lease;
        if let Some(key) = key_of(id) {
            self.pool().leased.insert(key, l);
        }
        Ok(())
    }

    /// Reports what a leased call has so far (see [`super::Progress`]); the
    /// lease is not extended.
    pub fn progress(&self, id: &str, progress: Value) -> Result<(), Error> {
        let l = self.settle(id)?;
        if let Some(p) = &l.waiting.call.progress {
            p.report(progress);
        }
        if let Some(key) = key_of(id) {
            self.pool().leased.insert(key, l);
        }
        Ok(())
    }

    /// Reports a call done with `output`.
    pub fn complete(&self, id: &str, output: Value) -> Result<(), Error> {
        let l = self.settle(id)?;
        let _ = l.waiting.reply.send(Ok(output));
        Ok(())
    }

    /// Reports a call failed.
    pub fn fail(&self, id: &str, message: String, retryable: bool) -> Result<(), Error> {
        let l = self.settle(id)?;
        let _ = l.waiting.reply.send(Err(Failure {
            message,
            retryable,
            retry_after: None,
        }));
        Ok(())
    }

    /// Per agent: calls waiting for a worker, and calls leased.
    pub fn depths(&self) -> Vec<(String, usize, usize)> {
        Self::depths_of(&self.pool())
    }

    fn depths_of(pool: &Pool) -> Vec<(String, usize, usize)> {
        let mut out: HashMap<&str, (usize, usize)> = HashMap::new();
        for (agent, q) in &pool.queues {
            out.entry(agent).or_default().0 += q.len();
        }
        for l in pool.leased.values() {
            out.entry(&l.agent).or_default().1 += 1;
        }
        let mut out: Vec<_> = out
            .into_iter()
            .map(|(a, (w, l))| (a.to_string(), w, l))
            .collect();
        out.sort();
        out
    }
}

/// Counts a worker's poll out when it ends.
struct PollDone<'a>(&'a Workers, Arc<str>);

impl Drop for PollDone<'_> {
    fn drop(&mut self) {
        let mut pool = self.0.pool();
        if let Some(s) = pool.workers.get_mut(&self.1) {
            s.polling = s.polling.saturating_sub(1);
            s.last_seen = Instant::now();
            s.last_seen_ms = crate::clock::now_ms();
        }
    }
}

/// [`Workers::snapshot`].
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Per agent: its name, calls waiting for a worker, calls leased.
    pub agents: Vec<(String, usize, usize)>,
    /// Workers seen in the last minutes, by name.
    pub workers: Vec<WorkerView>,
    /// Leases, the soonest to expire first (at most as many as asked).
    pub leases: Vec<LeaseView>,
    /// Leases in all.
    pub leased: usize,
}

/// A worker process, by the name it polls with.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    /// Its name.
    pub name: String,
    /// The agents it polls for.
    pub agents: Vec<String>,
    /// Its polls waiting now (a connected worker keeps one open).
    pub polling: u32,
    /// Calls it holds.
    pub leases: u32,
    /// When it last polled, Unix milliseconds.
    pub last_seen_ms: u64,
}

/// A call leased to a worker.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    /// The agent.
    pub agent: String,
    /// The worker holding it.
    pub worker: String,
    /// The run.
    pub run: String,
    /// The task.
    pub task: String,
    /// The attempt.
    pub attempt: u32,
    /// When the lease expires unless extended, Unix milliseconds.
    pub expires_ms: u64,
}

/// The queue a `worker` agent's calls wait in: its name, or for a tenant's
/// workflow `<tenant>/<name>`, which the tenant's workers poll by the agent's
/// name alone (a tenant name holds no `/`).
pub fn queue(tenant: Option<&str>, agent: &str) -> String {
    match tenant {
        Some(t) => format!("{t}/{agent}"),
        None => agent.to_string(),
    }
}

/// The runner of one `worker` agent: its calls go to the pool under its name.
pub struct Worker {
    name: String,
    pool: Arc<Workers>,
}

impl Worker {
    /// A runner whose calls wait in `pool` under `name`.
    pub fn new(name: &str, pool: Arc<Workers>) -> Worker {
        Worker {
            name: name.to_string(),
            pool,
        }
    }
}

impl Runner for Worker {
    fn reports_progress(&self) -> bool {
        true
    }

    fn start(&self, call: Call) -> Started {
        let (reply, outcome) = oneshot::channel();
        self.pool.enqueue(&self.name, Waiting { call, reply });
        Started::Later(Box::pin(async move {
            outcome
                .await
                .unwrap_or_else(|_| Err(Failure::retryable("the worker pool was dropped")))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunId;

    fn call(task: &str) -> Call {
        Call {
            run: RunId(7),
            task: task.into(),
            attempt: 1,
            input: serde_json::json!({"task": task}),
            estimate: None,
            iteration: None,
            decisions: None,
            progress: None,
        }
    }

    fn later(s: Started) -> super::super::Pending {
        match s {
            Started::Later(p) => p,
            Started::Done(_) => panic!("a worker call never finishes at once"),
        }
    }

    #[tokio::test]
    async fn a_polled_call_completes_with_the_workers_output() {
        let pool = Arc::new(Workers::default());
        let w = Worker::new("w", pool.clone());
        let pending = tokio::spawn(later(w.start(call("a"))));
        let got = pool
            .poll(
                "w",
                "tester",
                10,
                Duration::from_secs(1),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].task, "a");
        assert_eq!(got[0].run, "0000000000000007");
        pool.complete(&got[0].id, serde_json::json!({"ok": 1}))
            .unwrap();
        assert_eq!(pending.await.unwrap(), Ok(serde_json::json!({"ok": 1})));
        // Reported once; a second report is refused.
        assert!(matches!(
            pool.complete(&got[0].id, Value::Null),
            Err(Error::UnknownLease(_))
        ));
    }

    /// A tenant's calls wait under `<tenant>/<agent>`, and only that
    /// tenant's leases are its own.
    #[tokio::test(start_paused = true)]
    async fn a_tenants_calls_and_leases_are_its_own() {
        let pool = Arc::new(Workers::default());
        assert_eq!(queue(Some("acme"), "w"), "acme/w");
        assert_eq!(queue(None, "w"), "w");
        let w = Worker::new(&queue(Some("acme"), "w"), pool.clone());
        let _call = tokio::spawn(later(w.start(call("a"))));
        tokio::task::yield_now().await;
        let lease = Duration::from_secs(30);
        assert!(
            pool.poll("w", "x", 1, Duration::ZERO, lease)
                .await
                .is_empty()
        );
        let got = pool.poll("acme/w", "x", 1, Duration::ZERO, lease).await;
        assert_eq!(got.len(), 1);
        assert!(pool.of_tenant(&got[0].id, "acme"));
        for other in ["acm", "acme/", "bolt", ""] {
            assert!(!pool.of_tenant(&got[0].id, other), "{other}");
        }
        assert!(!pool.of_tenant("not-a-lease", "acme"));
    }

    /// The snapshot names each worker, what it polls for, its open polls and
    /// its leases (without their ids); idle workers are forgotten.
    #[tokio::test(start_paused = true)]
    async fn the_snapshot_shows_workers_and_their_leases() {
        let pool = Arc::new(Workers::default());
        let w = Worker::new("w", pool.clone());
        let _calls: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|t| tokio::spawn(later(w.start(call(t)))))
            .collect();
        let lease = Duration::from_secs(30);
        let got = pool.poll("w", "host-1", 2, Duration::ZERO, lease).await;
        assert_eq!(got.len(), 2);
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.poll("other", "host-2", 1, Duration::from_secs(60), lease)
                    .await
            })
        };
        tokio::task::yield_now().await;
        let s = pool.snapshot(10);
        assert_eq!(s.agents, [("w".to_string(), 1, 2)]);
        let names: Vec<(&str, u32, u32)> = s
            .workers
            .iter()
            .map(|w| (w.name.as_str(), w.polling, w.leases))
            .collect();
        assert_eq!(names, [("host-1", 0, 2), ("host-2", 1, 0)]);
        assert_eq!(s.workers[1].agents, ["other"]);
        assert_eq!((s.leased, s.leases.len()), (2, 2));
        assert_eq!(s.leases[0].worker, "host-1");
        assert_eq!(s.leases[0].run, "0000000000000007");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains(&got[0].id), "lease ids are secrets: {json}");
        assert_eq!(pool.snapshot(1).leases.len(), 1);
        // Idle for five minutes: forgotten; its leases expired long before.
        waiting.abort();
        let _ = waiting.await;
        tokio::time::advance(FORGET_WORKERS_AFTER + Duration::from_secs(1)).await;
        let s = pool.snapshot(10);
        assert!(s.workers.is_empty(), "{:?}", s.workers);
        assert_eq!(s.agents, [("w".to_string(), 3, 0)]);
    }

    #[tokio::test]
    async fn a_long_poll_wakes_when_a_call_arrives() {
        let pool = Arc::new(Workers::default());
        let poller = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.poll(
                    "w",
                    "tester",
                    1,
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let w = Worker::new("w", pool.clone());
        let pending = tokio::spawn(later(w.start(call("b"))));
        let got = poller.await.unwrap();
        assert_eq!(got.len(), 1);
        pool.fail(&got[0].id, "nope".into(), false).unwrap();
        assert_eq!(pending.await.unwrap(), Err(Failure::permanent("nope")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_returns_the_call_to_the_pool() {
        let pool = Arc::new(Workers::default());
        let w = Worker::new("w", pool.clone());
        let _pending = later(w.start(call("c")));
        let first = pool
            .poll("w", "tester", 1, Duration::ZERO, Duration::from_secs(10))
            .await;
        assert_eq!(first.len(), 1);
        assert!(
            pool.poll("w", "tester", 1, Duration::ZERO, Duration::from_secs(10))
                .await
                .is_empty()
        );
        // A heartbeat keeps it.
        tokio::time::advance(Duration::from_secs(8)).await;
        pool.heartbeat(&first[0].id, Duration::from_secs(10))
            .unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(
            pool.poll("w", "tester", 1, Duration::ZERO, Duration::from_secs(10))
                .await
                .is_empty()
        );
        // Then it expires and goes to the next poll; the old lease is void.
        tokio::time::advance(Duration::from_secs(3)).await;
        let second = pool
            .poll("w", "tester", 1, Duration::ZERO, Duration::from_secs(10))
            .await;
        assert_eq!(second.len(), 1);
        assert_ne!(first[0].id, second[0].id);
        assert!(matches!(
            pool.complete(&first[0].id, Value::Null),
            Err(Error::Expired(_))
        ));
        assert!(pool.complete(&second[0].id, Value::Null).is_ok());
    }

    #[tokio::test]
    async fn calls_nobody_waits_for_are_not_handed_out() {
        let pool = Arc::new(Workers::default());
        let w = Worker::new("w", pool.clone());
        drop(later(w.start(call("d"))));
        assert!(
            pool.poll("w", "tester", 1, Duration::ZERO, Duration::from_secs(1))
                .await
                .is_empty()
        );
        assert_eq!(pool.depths(), [("w".to_string(), 0, 0)]);
    }
}

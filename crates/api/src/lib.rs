#![doc = include_str!("../README.md")]

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error body (RFC 9457 problem details) with a stable `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the problem type (`https://baton.dev/problems/{code}`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this occurrence, and what to do.
    pub detail: String,
    /// A stable machine-readable code (`not-found`, `invalid-workflow`, ...).
    pub code: String,
    /// Every finding, for `invalid-workflow` and `invalid-request`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The id of the request this answers (its `x-request-id`), to find it in
    /// the server's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem with no per-field errors; the title comes from the code.
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("https://baton.dev/problems/{code}"),
            title: title(code).into(),
            status,
            detail: detail.into(),
            code: code.into(),
            errors: Vec::new(),
            request_id: None,
        }
    }
}

/// The title of each stable code.
pub fn title(code: &str) -> &'static str {
    match code {
        "invalid-workflow" => "The workflow is invalid",
        "invalid-request" => "The request is invalid",
        "bad-request" => "The request could not be read",
        "not-found" => "Not found",
        "method-not-allowed" => "Method not allowed",
        "conflict" => "The operation conflicts with the current state",
        "payload-too-large" => "The request is too large",
        "unsupported-media-type" => "Unsupported media type",
        "unauthorized" => "Authentication required",
        "insufficient-scope" => "The token lacks the scope this operation needs",
        "forbidden" => "Forbidden",
        "rate-limited" => "Too many requests",
        "agent-not-allowed" => "The workflow defines agents the server does not allow",
        "uri-too-long" => "The URI is too long",
        "headers-too-large" => "The headers are too large",
        "timeout" => "The request timed out",
        "unavailable" => "The service is unavailable",
        _ => "Internal error",
    }
}

/// One finding about a request or a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    /// A stable code (`unknown-dependency`, `cycle`, `unknown-field`, ...).
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Where, as a JSON path into the document (`$.tasks[2].depends_on[0]`).
    pub path: String,
    /// Where, as a line and column of the posted text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// A plan's figures (as `baton plan --format json` reports them, task names
/// instead of ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Tasks, compensation tasks included.
    pub tasks: usize,
    /// Compensation tasks (not planned).
    pub handlers: usize,
    /// Dependency edges.
    pub edges: usize,
    /// Parallel stages.
    pub stage_count: usize,
    /// The widest stage.
    pub max_width: u32,
    /// The longest weighted path: its tasks in order.
    pub critical_path: Vec<String>,
    /// Its length, seconds.
    pub critical_path_seconds: f64,
    /// Sum of the forward tasks' estimates, seconds.
    pub total_work_seconds: f64,
    /// `total_work / critical path length`.
    pub parallelism: f64,
    /// Redundant (transitively implied) edges found.
    pub redundant_edges: usize,
}

/// `POST /api/v1/workflows` → 201.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowCreated {
    /// The workflow's id (16 hex digits).
    pub id: String,
    /// 1 for a new name, one more for each posting of the same name.
    pub version: u32,
    /// The workflow's name (or `null`).
    pub name: Option<String>,
    /// Its plan's figures.
    pub plan: PlanSummary,
    /// Warnings (the workflow is valid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FieldError>,
}

/// One entry of `GET /api/v1/workflows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    /// The id.
    pub id: String,
    /// The version.
    pub version: u32,
    /// The name.
    pub name: Option<String>,
    /// The tenant it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Its plan's figures.
    pub plan: PlanSummary,
}

/// `GET /api/v1/workflows/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub info: WorkflowInfo,
    /// The workflow document, as JSON.
    pub document: Value,
}

/// A page of a list; `next_cursor` fetches the next one (`?cursor=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An item of `GET /api/v1/executions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEntry {
    /// The execution id.
    pub execution_id: String,
    /// The workflow id (runs started over the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// The workflow's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The workflow's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `executing` | `paused` | `completed` | `failed` | `cancelled`.
    pub status: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Task counts by status.
    pub task_counts: Value,
    /// The execution that started this one as a child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The finished execution this one reran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
}

/// `GET /api/v1/workflows/{id}/plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDetail {
    /// The figures.
    pub summary: PlanSummary,
    /// The stages: task ids, in declaration order within a stage.
    pub stages: Vec<Vec<String>>,
    /// Redundant edges as `[from, to]` task ids.
    pub redundant_edges: Vec<[String; 2]>,
    /// With `?schedule=true`: each task's stage, earliest and latest start
    /// and slack, in declaration order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Vec<Scheduled>>,
}

/// When a task can start in a run with unbounded parallelism (untimed tasks
/// count as 1 s), seconds from the run's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    /// The task.
    pub id: String,
    /// Its stage, from 1.
    pub stage: u32,
    /// Every dependency ended as early as it could.
    pub earliest_start: f64,
    /// The latest start that does not lengthen the critical path.
    pub latest_start: f64,
    /// `latest_start - earliest_start`: 0 on the critical path.
    pub slack: f64,
}

/// `GET /api/v1/executions/{id}/workflow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunWorkflow {
    /// The workflow the run runs (as the engine holds it: defaults filled in).
    pub document: Value,
    /// Its plan.
    pub plan: PlanDetail,
}

/// `POST /api/v1/workflows/{id}/execute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// The run's input (any JSON; `null` when absent).
    #[serde(default)]
    pub input_data: Value,
    /// How this execution runs.
    #[serde(default)]
    pub execution_options: ExecutionOptions,
}

/// `POST /api/v1/executions/{id}/rerun`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// The task to run again, with everything downstream of it.
    pub from: String,
}

/// Options of one execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionOptions {
    /// Cancels the run when it has not ended after this long: a duration string
    /// (`"30s"`, `"5m"`, `"250ms"`) or a number of seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Value>,
    /// A task `retry` (`{max_attempts, backoff}`) for tasks that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<Value>,
    /// Limits on what the run may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_constraints: Option<ResourceConstraints>,
}

/// Resource limits of an execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConstraints {
    /// Caps every agent's `concurrency` at this many calls in flight.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::option"
    )]
    pub max_concurrency: Option<u32>,
}

/// `POST /api/v1/workflows/{id}/execute` → 202.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteResponse {
    /// The execution (run) id, 16 hex digits.
    pub execution_id: String,
    /// `executing` (or `planning` while queued for admission).
    pub status: String,
    /// The workflow.
    pub workflow_id: String,
}

/// `GET /api/v1/executions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStatus {
    /// The execution id.
    pub execution_id: String,
    /// The workflow id.
    pub workflow_id: Option<String>,
    /// The workflow's name.
    pub workflow: Option<String>,
    /// The workflow's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `planning` | `executing` | `paused` | `completed` | `failed` | `cancelled`.
    pub status: String,
    /// `running`, `compensating`, `paused` or `done`.
    pub current_phase: String,
    /// Why it failed or was cancelled (`timed out` when `execution_options.timeout` hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The finished execution this one reran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    /// The execution whose task started this one (a sub-workflow, a team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The agents that ran or run its tasks.
    pub agents: Vec<AgentState>,
    /// Figures.
    pub performance_metrics: PerformanceMetrics,
    /// Task counts by state.
    pub task_counts: Value,
    /// Every task's state.
    pub tasks: Vec<TaskState>,
}

/// One agent of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent's name.
    pub agent_id: String,
    /// `busy` (a task of this run in flight) or `idle`.
    pub status: String,
    /// A task of this run it is working on.
    pub current_task: Option<String>,
    /// Its tasks of this run that ended / all its tasks of this run so far (0..=1).
    pub progress: f64,
}

/// An execution's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceMetrics {
    /// Start to last task end (or so far), seconds.
    pub total_runtime: f64,
    /// Distinct agents its tasks ran on.
    pub agents_allocated: usize,
    /// Tasks that succeeded.
    pub tasks_completed: u64,
    /// `makespan − critical-path agent time`, seconds: what coordination added.
    pub coordination_overhead: f64,
    /// Ready → dispatched latency percentiles, µs.
    pub dispatch_latency_us: Value,
    /// Attempts beyond the first.
    pub retries: u64,
    /// The critical path as it ran: the chain of tasks, each waiting on the
    /// one before, that ended last (absent before any task ended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub critical_path: Vec<String>,
    /// Tokens its `llm` agents' models used, when any did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

/// Tokens models used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Of the prompts.
    pub prompt: u64,
    /// Of the answers.
    pub completion: u64,
}

/// One task of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// The task id.
    pub id: String,
    /// `pending` | `ready` | `dispatched` | `running` | `succeeded` | `failed` |
    /// `skipped` | `cancelled` | `compensated`.
    pub status: String,
    /// Attempts so far.
    pub attempt: u32,
    /// The agent of its last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Its last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was skipped, when a route decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A fan-out's instances while they run: `total`, `waiting`, `running`,
    /// `succeeded`, `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Value>,
    /// The child run a sub-workflow task waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
}

/// `POST /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The topic (default `baton.signals`, the topic `wait_for` tasks watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// 1 to 10,000 events.
    pub events: Vec<EventIn>,
}

/// An event to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its key: events with one key keep their order.
    #[serde(default)]
    pub key: String,
    /// Any JSON.
    #[serde(default)]
    pub payload: Value,
    /// String headers (`baton.run` addresses a `wait_for` task of one run).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// An id (32 hex digits) for dedup; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A partition and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRef {
    /// The partition.
    #[serde(deserialize_with = "integral::value")]
    pub partition: u32,
    /// The offset in it.
    #[serde(deserialize_with = "integral::value")]
    pub offset: u64,
}

/// `POST /api/v1/events` → 200: each event's offset, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishResponse {
    /// The topic.
    pub topic: String,
    /// Offsets, in batch order.
    pub offsets: Vec<OffsetRef>,
}

/// An event as delivered or streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventOut {
    /// Where it is.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// Its id (32 hex digits).
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its key.
    pub key: String,
    /// When it was published, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Its headers.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The payload: JSON when it parses, else a string.
    pub payload: Value,
    /// How often it was delivered to the group (polls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<u32>,
}

/// `GET /api/v1/topics/{topic}/groups/{group}/poll` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollResponse {
    /// The events delivered (acknowledge them with `ack`).
    pub events: Vec<EventOut>,
}

/// `GET /api/v1/topics` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topics {
    /// Every topic, by name.
    pub topics: Vec<Topic>,
}

/// A topic: its partitions and consumer groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    /// Its name (`X.dlq` holds the dead letters of `X`).
    pub name: String,
    /// Retained events over all partitions.
    pub events: u64,
    /// Retained bytes over all partitions.
    pub bytes: u64,
    /// Its partitions, by number.
    pub partitions: Vec<Partition>,
    /// Its consumer groups.
    pub groups: Vec<Group>,
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    /// Its number.
    pub partition: u32,
    /// The oldest retained offset.
    pub start: u64,
    /// One past the newest offset.
    pub end: u64,
    /// Retained bytes.
    pub bytes: u64,
}

/// A consumer group of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Published events not yet delivered to it.
    pub lag: u64,
    /// Delivered, unacknowledged events.
    pub pending: u64,
    /// Its members seen since the log was opened.
    pub members: Vec<Member>,
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its last poll, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// Events it holds unacknowledged.
    pub pending: u64,
}

/// `GET /api/v1/topics/{topic}/events` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadResponse {
    /// The events read, in offset order.
    pub events: Vec<EventOut>,
    /// Where the next page starts (`from`), absent once the partition's end was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_from: Option<u64>,
}

/// `POST /api/v1/topics/{topic}/groups/{group}/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// The events to acknowledge.
    pub offsets: Vec<OffsetRef>,
}

/// `ack` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckResponse {
    /// How many were pending.
    pub acknowledged: usize,
}

/// `GET /api/v1/topics/{topic}/groups/{group}/pending` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingResponse {
    /// Delivered, unacknowledged events, oldest delivery first.
    pub pending: Vec<PendingOut>,
}

/// One delivered, unacknowledged event of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOut {
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The member holding it.
    pub member: String,
    /// When it was (last) delivered, ms since the Unix epoch.
    pub since_ms: u64,
    /// Times delivered.
    pub deliveries: u32,
    /// When another member may take it, ms since the Unix epoch.
    pub claimable_at_ms: u64,
}

/// `POST /api/v1/topics/{topic}/redrive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Most letters moved, oldest first (default 10,000, at most 100,000).
    #[serde(default = "ten_thousand", deserialize_with = "integral::value")]
    pub max: usize,
}

fn ten_thousand() -> usize {
    10_000
}

/// `redrive` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveResponse {
    /// The topic the letters went back to.
    pub topic: String,
    /// Letters moved.
    pub moved: u64,
    /// Letters not redriven yet.
    pub remaining: u64,
}

/// `GET /api/v1/agents` → 200: the agents the engine has called, the remote
/// workers seen in the last minutes and the calls leased to them, and, with
/// several instances, the instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentsResponse {
    /// Agents by name (the operator's `[agents.*]` and those of workflows).
    pub agents: Vec<AgentOut>,
    /// Whether agents were left out (more than 1,000).
    pub truncated: bool,
    /// Remote workers by the name they poll with.
    pub workers: Vec<WorkerOut>,
    /// Leased calls, the soonest to expire first (at most 200).
    pub leases: Vec<LeaseOut>,
    /// Leased calls in all.
    pub leased: u64,
    /// The instances sharing the state store, when there are several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<InstanceOut>>,
}

/// One agent's load and health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentOut {
    /// Its name.
    pub name: String,
    /// Its type (`worker`, `command`, `http`, `llm`, `simulate`, `noop`).
    pub kind: String,
    /// Whether the server's config defines it (`[agents.NAME]`).
    pub operator: bool,
    /// Calls in flight.
    pub in_flight: u32,
    /// Calls it may have in flight at once; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Calls waiting for one of those slots.
    pub queued: u64,
    /// Calls since the server started.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Its circuit breaker: `closed`, `open` or `half_open`.
    pub breaker: String,
    /// For `worker` agents: calls waiting for a worker to poll.
    pub waiting: u64,
    /// For `worker` agents: calls leased to workers.
    pub leased: u64,
}

/// A remote worker, by the name it polls with (`worker` of the poll).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerOut {
    /// Its name (`(unnamed)` for workers that poll without one).
    pub name: String,
    /// The agents it polls for.
    pub agents: Vec<String>,
    /// Its polls waiting now: a connected worker keeps one open.
    pub polling: u32,
    /// Calls it holds.
    pub leases: u32,
    /// When it last polled, ms since the Unix epoch.
    pub last_seen_ms: u64,
}

/// A call leased to a worker (its lease id is not shown: it lets whoever holds
/// it report the call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseOut {
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
    /// When the lease expires unless extended, ms since the Unix epoch.
    pub expires_ms: u64,
}

/// One instance of several sharing a PostgreSQL state store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceOut {
    /// Its id (also its fencing epoch).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Where the others reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When it registered, ms since the Unix epoch (database clock).
    pub started_at_ms: i64,
    /// What its lease has left, ms (negative: expired, its runs move).
    pub lease_left_ms: i64,
    /// Unfinished runs it owns.
    pub runs: u64,
    /// Whether it is the instance that answered.
    pub this: bool,
}

/// `GET /api/v1/stats` → 200: the server's figures, sampled every
/// `interval_ms` over the last minutes, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Time between two samples, ms.
    pub interval_ms: u64,
    /// The samples, oldest first (rates come from two in a row).
    pub samples: Vec<Sample>,
}

/// The server's figures at one time. Counters count since the server started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When, ms since the Unix epoch.
    pub t_ms: u64,
    /// Events published through the API (counter).
    pub events_published: u64,
    /// Task transitions (counter).
    pub transitions: u64,
    /// Runs in progress.
    pub runs_running: u64,
    /// Runs paused.
    pub runs_paused: u64,
    /// Runs running compensations.
    pub runs_compensating: u64,
    /// Runs waiting for admission.
    pub runs_queued: u64,
    /// Runs completed (counter).
    pub runs_completed: u64,
    /// Runs failed (counter).
    pub runs_failed: u64,
    /// Runs cancelled (counter).
    pub runs_cancelled: u64,
    /// Tasks ready and waiting for an agent.
    pub ready_queue: u64,
    /// Coordination overhead (ready → dispatched) of the tasks dispatched
    /// since the previous sample.
    pub dispatch: Latency,
}

/// Latency percentiles over some samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Largest, µs.
    pub max_us: f64,
}

/// `POST /api/v1/agents/{name}/poll`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerPoll {
    /// Most assignments returned (default 1, at most 1,000).
    #[serde(default = "one", deserialize_with = "integral::value")]
    pub max: usize,
    /// Longest wait for work, ms (default 20,000, at most 60,000).
    #[serde(default = "twenty_s", deserialize_with = "integral::value")]
    pub wait_ms: u64,
    /// Lease of each assignment, ms (default 30,000): heartbeat before it expires.
    #[serde(default = "thirty_s", deserialize_with = "integral::value")]
    pub lease_ms: u64,
    /// The polling worker's name (for example `host:pid`), shown with its
    /// leases in `GET /api/v1/agents`; at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

fn one() -> usize {
    1
}
fn twenty_s() -> u64 {
    20_000
}
fn thirty_s() -> u64 {
    30_000
}

/// A task call handed to a worker (`POST /api/v1/agents/{name}/poll`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The lease's id: what the worker heartbeats, completes or fails.
    pub id: String,
    /// The execution.
    pub run: String,
    /// The task's id.
    pub task: String,
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// `{"run", "task", "attempt", "input", "upstream", "run_input"}`.
    pub input: Value,
    /// When the lease expires unless extended, ms since the Unix epoch.
    pub lease_expires_ms: u64,
}

/// `POST /api/v1/agents/{name}/poll` → 200 (empty when nothing arrived in time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    /// The calls leased to this worker.
    pub assignments: Vec<Assignment>,
}

/// `POST /api/v1/tasks/{id}/heartbeat|complete|fail` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// The lease.
    pub id: String,
    /// `extended`, `completed` or `failed`.
    pub status: String,
}

/// `POST /api/v1/tasks/{id}/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// New lease from now, ms (default 30,000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::option"
    )]
    pub lease_ms: Option<u64>,
}

/// `POST /api/v1/tasks/{id}/complete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Complete {
    /// The task's output.
    #[serde(default)]
    pub output: Value,
}

/// `POST /api/v1/tasks/{id}/progress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// What the call has so far: partial output, a percentage, a status line.
    pub progress: Value,
}

/// `POST /api/v1/tasks/{id}/fail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed (default true).
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/tasks/report`: many leased calls reported in one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskReports {
    /// 1 to 1,000 reports, applied in order.
    pub reports: Vec<TaskReport>,
}

/// One report of a batch: the lease, and exactly one of `complete`, `fail`
/// and `heartbeat` (the bodies of the single-call routes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskReport {
    /// The lease.
    pub id: String,
    /// The call's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<Complete>,
    /// The call's failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<Fail>,
    /// A longer lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
}

/// `POST /api/v1/tasks/report` → 200: a result per report, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReportResults {
    /// `{"id", "status"}`: `completed`, `failed`, `extended`, or `expired`
    /// (the lease expired: the result is not taken) or `unknown` (already
    /// reported, or never given).
    pub results: Vec<LeaseResponse>,
}

/// `POST /api/v1/executions/{id}/pause|resume|cancel` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// The execution.
    pub execution_id: String,
    /// What was done: `pause`, `resume` or `cancel`.
    pub action: String,
}

/// Non-negative integers as JSON may write them: `5` or `5.0`. JSON has one
/// number type and JSON Schema's `integer` admits a zero fraction, so a client
/// (or a generator such as schemathesis) sending `5.0` sent a valid integer.
mod integral {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserialize as _;
    use serde::de::{self, Deserializer, Unexpected, Visitor};

    struct Integral<T>(PhantomData<T>);

    impl<T: TryFrom<u64>> Visitor<'_> for Integral<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "a non-negative integer that fits a {}",
                std::any::type_name::<T>()
            )
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            // 2^64 is exactly representable; below it every integral f64 fits a u64.
            if v.fract() == 0.0 && (0.0..2f64.powi(64)).contains(&v) {
                self.visit_u64(v as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    pub(crate) fn value<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        d.deserialize_u64(Integral(PhantomData))
    }

    pub(crate) fn option<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        struct Item<T>(T);
        impl<'de, T: TryFrom<u64>> serde::Deserialize<'de> for Item<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                value(d).map(Item)
            }
        }
        Ok(Option::<Item<T>>::deserialize(d)?.map(|i| i.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_execution_options_are_rejected() {
        let err =
            serde_json::from_str::<ExecuteRequest>(r#"{"execution_options": {"timeot": "1s"}}"#)
                .unwrap_err();
        assert!(err.to_string().contains("timeot"), "{err}");
    }

    #[test]
    fn integers_may_have_a_zero_fraction() {
        let req: ExecuteRequest = serde_json::from_str(
            r#"{"execution_options": {"resource_constraints": {"max_concurrency": 5692.0}}}"#,
        )
        .unwrap();
        let rc = req.execution_options.resource_constraints.unwrap();
        assert_eq!(rc.max_concurrency, Some(5692));
        let o: OffsetRef = serde_json::from_str(r#"{"partition": 1.0, "offset": 7}"#).unwrap();
        assert_eq!((o.partition, o.offset), (1, 7));
        for bad in [
            r#"{"partition": 1.5, "offset": 0}"#,
            r#"{"partition": -1, "offset": 0}"#,
            r#"{"partition": 4294967296, "offset": 0}"#,
        ] {
            assert!(serde_json::from_str::<OffsetRef>(bad).is_err(), "{bad}");
        }
        let h: Heartbeat = serde_json::from_str("{}").unwrap();
        assert_eq!(h.lease_ms, None);
    }

    #[test]
    fn problem_omits_empty_errors() {
        let v = serde_json::to_value(Problem::new(409, "conflict", "x")).unwrap();
        assert!(v.get("errors").is_none());
        assert_eq!(v["title"], "The operation conflicts with the current state");
    }
}

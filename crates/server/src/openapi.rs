//! The OpenAPI 3.1 document, built from [`ROUTES`] (the same table the docs and
//! tests check against the router) and the schemas below. Served at
//! `/openapi.json` and committed as `docs/openapi.json`.

use serde_json::{Map, Value, json};

use crate::tokens::Scope;

/// One operation.
pub struct Route {
    /// `get`, `post`.
    pub method: &'static str,
    /// The operation's id (`createWorkflow`): what generated clients call it.
    pub id: &'static str,
    /// The path template.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Query parameters: name, JSON schema (as JSON text), description.
    pub query: &'static [(&'static str, &'static str, &'static str)],
    /// The request body schema (a name in `components/schemas`) and media types.
    pub body: Option<&'static str>,
    /// The success status and its schema (`None`: no JSON body).
    pub ok: (u16, Option<&'static str>),
    /// Error statuses besides 401/500.
    pub errors: &'static [u16],
    /// The scope a token needs for it (`None`: open to anyone; `/metrics`
    /// needs `metrics` when the server says so, `metrics_requires_auth`).
    pub scope: Option<Scope>,
}

/// Every route the server answers.
pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        id: "createWorkflow",
        path: "/api/v1/workflows",
        summary: "Create a workflow (JSON, or YAML with Content-Type: application/yaml): validated, planned, stored with a version",
        query: &[],
        body: Some("Workflow"),
        ok: (201, Some("WorkflowCreated")),
        errors: &[400, 403, 413, 415, 422],
        scope: Some(Scope::WorkflowsWrite),
    },
    Route {
        method: "get",
        id: "listWorkflows",
        path: "/api/v1/workflows",
        summary: "List workflows, newest first",
        query: &[
            (
                "limit",
                r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
                "page size, 1..=1000 (default 50)",
            ),
            (
                "cursor",
                r#"{"type": "string", "pattern": "^[0-9a-f]{1,15}$"}"#,
                "next_cursor of the previous page",
            ),
        ],
        body: None,
        ok: (200, Some("WorkflowPage")),
        errors: &[400, 422],
        scope: Some(Scope::WorkflowsRead),
    },
    Route {
        method: "get",
        id: "getWorkflow",
        path: "/api/v1/workflows/{id}",
        summary: "A workflow: its document and plan summary",
        query: &[],
        body: None,
        ok: (200, Some("WorkflowDetail")),
        errors: &[404],
        scope: Some(Scope::WorkflowsRead),
    },
    Route {
        method: "get",
        id: "getWorkflowPlan",
        path: "/api/v1/workflows/{id}/plan",
        summary: "A workflow's plan: stages, critical path, redundant edges",
        query: &[(
            "schedule",
            r#"{"type": "boolean"}"#,
            "add each task's stage, earliest and latest start and slack (default false)",
        )],
        body: None,
        ok: (200, Some("PlanDetail")),
        errors: &[400, 404],
        scope: Some(Scope::WorkflowsRead),
    },
    Route {
        method: "post",
        id: "executeWorkflow",
        path: "/api/v1/workflows/{id}/execute",
        summary: "Start an execution",
        query: &[],
        body: Some("ExecuteRequest"),
        ok: (202, Some("ExecuteResponse")),
        errors: &[400, 403, 404, 413, 415, 422, 503],
        scope: Some(Scope::RunsWrite),
    },
    Route {
        method: "get",
        id: "listExecutions",
        path: "/api/v1/executions",
        summary: "List this instance's executions (those it drives, and the newest that ended), newest first",
        query: &[
            (
                "limit",
                r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
                "page size, 1..=1000 (default 50)",
            ),
            (
                "cursor",
                r#"{"type": "string", "pattern": "^[0-9a-f]{16}$"}"#,
                "next_cursor of the previous page",
            ),
            (
                "status",
                r#"{"type": "string", "enum": ["executing", "paused", "completed", "failed", "cancelled"]}"#,
                "only executions in this status",
            ),
            (
                "workflow",
                r#"{"type": "string"}"#,
                "only executions of the workflow with this name",
            ),
            (
                "since_ms",
                r#"{"type": "integer", "minimum": 0, "maximum": 18446744073709551615}"#,
                "only executions created at or after this time (Unix milliseconds)",
            ),
            (
                "until_ms",
                r#"{"type": "integer", "minimum": 0, "maximum": 18446744073709551615}"#,
                "only executions created before this time (Unix milliseconds)",
            ),
            (
                "parent",
                r#"{"type": "string", "pattern": "^[0-9a-f]{16}$"}"#,
                "only child runs of this execution",
            ),
        ],
        body: None,
        ok: (200, Some("ExecutionPage")),
        errors: &[400, 422],
        scope: Some(Scope::RunsRead),
    },
    Route {
        method: "get",
        id: "getExecution",
        path: "/api/v1/executions/{id}",
        summary: "An execution's status, agents, metrics and tasks; with wait_ms, answered when the run ends or the wait is over",
        query: &[(
            "wait_ms",
            r#"{"type": "integer", "minimum": 0}"#,
            "wait up to this long for the run to end before answering (capped by the server's long_poll_max_ms and half its request timeout; default 0: at once)",
        )],
        body: None,
        ok: (200, Some("ExecutionStatus")),
        errors: &[400, 404],
        scope: Some(Scope::RunsRead),
    },
    Route {
        method: "get",
        id: "getExecutionWorkflow",
        path: "/api/v1/executions/{id}/workflow",
        summary: "The workflow an execution runs and its plan (child executions included)",
        query: &[],
        body: None,
        ok: (200, Some("RunWorkflow")),
        errors: &[404],
        scope: Some(Scope::RunsRead),
    },
    Route {
        method: "post",
        id: "pauseExecution",
        path: "/api/v1/executions/{id}/pause",
        summary: "Pause: tasks in flight finish, nothing new starts",
        query: &[],
        body: None,
        ok: (200, Some("ControlResponse")),
        errors: &[404, 409],
        scope: Some(Scope::RunsWrite),
    },
    Route {
        method: "post",
        id: "resumeExecution",
        path: "/api/v1/executions/{id}/resume",
        summary: "Resume a paused execution",
        query: &[],
        body: None,
        ok: (200, Some("ControlResponse")),
        errors: &[404, 409],
        scope: Some(Scope::RunsWrite),
    },
    Route {
        method: "post",
        id: "cancelExecution",
        path: "/api/v1/executions/{id}/cancel",
        summary: "Cancel: compensations run, the execution ends cancelled",
        query: &[],
        body: None,
        ok: (200, Some("ControlResponse")),
        errors: &[404, 409],
        scope: Some(Scope::RunsWrite),
    },
    Route {
        method: "post",
        id: "rerunExecution",
        path: "/api/v1/executions/{id}/rerun",
        summary: "Rerun a finished execution from a task: a new execution reusing the outputs of the tasks that succeeded, except the task and those downstream of it",
        query: &[],
        body: Some("RerunRequest"),
        ok: (202, Some("ExecuteResponse")),
        errors: &[400, 403, 404, 409, 413, 415, 422],
        scope: Some(Scope::RunsWrite),
    },
    Route {
        method: "get",
        id: "listTaskInstances",
        path: "/api/v1/executions/{id}/tasks/{task}/instances",
        summary: "A page of a fan-out's items or a loop's iterations, in index order, with their status, attempts, outputs and errors",
        query: &[
            (
                "offset",
                r#"{"type": "integer", "minimum": 0, "maximum": 4294967295}"#,
                "the first instance's index (default 0)",
            ),
            (
                "limit",
                r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
                "page size, 1..=1000 (default 100)",
            ),
        ],
        body: None,
        ok: (200, Some("InstancePage")),
        errors: &[400, 404, 422],
        scope: Some(Scope::RunsRead),
    },
    Route {
        method: "get",
        id: "streamExecutionEvents",
        path: "/api/v1/executions/{id}/events",
        summary: "The execution's events as Server-Sent Events (id = log offset; resume with Last-Event-ID)",
        query: &[],
        body: None,
        ok: (200, None),
        errors: &[404],
        scope: Some(Scope::RunsRead),
    },
    Route {
        method: "post",
        id: "publishEvents",
        path: "/api/v1/events",
        summary: "Publish 1 to 10,000 events; returns their offsets once durable",
        query: &[("topic", NAME, "the topic (default baton.signals)")],
        body: Some("PublishRequest"),
        ok: (200, Some("PublishResponse")),
        errors: &[400, 413, 415, 422],
        scope: Some(Scope::EventsPublish),
    },
    Route {
        method: "get",
        id: "readAuditTrail",
        path: "/api/v1/audit",
        summary: "The audit trail, oldest first: who (token id), what (method, route, path), when and the outcome of each audited call (admin only)",
        query: &[
            (
                "from",
                r#"{"type": "integer", "minimum": 0, "maximum": 18446744073709551615}"#,
                "first offset (next_from of the previous page; default 0)",
            ),
            (
                "max",
                r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
                "most records, 1..=1000 (default 100)",
            ),
        ],
        body: None,
        ok: (200, Some("ReadResponse")),
        errors: &[400, 404, 422],
        scope: Some(Scope::Admin),
    },
    Route {
        method: "get",
        id: "listTopics",
        path: "/api/v1/topics",
        summary: "Every topic with its partitions, and each consumer group's lag, pending events and members",
        query: &[],
        body: None,
        ok: (200, Some("Topics")),
        errors: &[],
        scope: Some(Scope::EventsConsume),
    },
    Route {
        method: "get",
        id: "readTopic",
        path: "/api/v1/topics/{topic}/events",
        summary: "Read retained events of one partition from an offset, outside any group (dead letters, replay)",
        query: &[
            (
                "partition",
                r#"{"type": "integer", "minimum": 0, "maximum": 4294967295}"#,
                "the partition (default 0)",
            ),
            (
                "from",
                r#"{"type": "integer", "minimum": 0, "maximum": 18446744073709551615}"#,
                "the first offset (default 0: the oldest retained)",
            ),
            (
                "max",
                r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
                "most events, 1..=1000 (default 100)",
            ),
        ],
        body: None,
        ok: (200, Some("ReadResponse")),
        errors: &[400, 404, 422],
        scope: Some(Scope::EventsConsume),
    },
    Route {
        method: "post",
        id: "redriveDeadLetters",
        path: "/api/v1/topics/{topic}/redrive",
        summary: "Move the oldest letters of a dead-letter topic (`X.dlq`) back to `X`",
        query: &[],
        body: Some("RedriveRequest"),
        ok: (200, Some("RedriveResponse")),
        errors: &[400, 403, 404, 413, 415, 422],
        scope: Some(Scope::EventsPublish),
    },
    Route {
        method: "get",
        id: "pollGroup",
        path: "/api/v1/topics/{topic}/groups/{group}/poll",
        summary: "Deliver events to a member of a consumer group (long poll)",
        query: &[
            ("member", NAME, "the member (default http)"),
            (
                "max",
                r#"{"type": "integer", "minimum": 1, "maximum": 10000}"#,
                "most events, 1..=10000 (default 100)",
            ),
            (
                "wait_ms",
                r#"{"type": "integer", "minimum": 0, "maximum": 18446744073709551615}"#,
                "longest wait for events, ms (default 0; at most 30000 and the server's long_poll_max_ms)",
            ),
        ],
        body: None,
        ok: (200, Some("PollResponse")),
        errors: &[400, 422],
        scope: Some(Scope::EventsConsume),
    },
    Route {
        method: "get",
        id: "listPending",
        path: "/api/v1/topics/{topic}/groups/{group}/pending",
        summary: "A group's delivered, unacknowledged events: who holds each, since when, how often delivered",
        query: &[(
            "limit",
            r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
            "most entries, 1..=1000 (default 100)",
        )],
        body: None,
        ok: (200, Some("Pending")),
        errors: &[400, 403, 404, 422],
        scope: Some(Scope::EventsConsume),
    },
    Route {
        method: "post",
        id: "ackEvents",
        path: "/api/v1/topics/{topic}/groups/{group}/ack",
        summary: "Acknowledge delivered events",
        query: &[],
        body: Some("AckRequest"),
        ok: (200, Some("AckResponse")),
        errors: &[400, 404, 413, 415, 422],
        scope: Some(Scope::EventsConsume),
    },
    Route {
        method: "get",
        id: "listAgents",
        path: "/api/v1/agents",
        summary: "Agents (load, concurrency, breaker), remote workers and their leases, and the instances when there are several",
        query: &[],
        body: None,
        ok: (200, Some("Agents")),
        errors: &[503],
        scope: Some(Scope::RunsRead),
    },
    Route {
        method: "get",
        id: "getStats",
        path: "/api/v1/stats",
        summary: "The server's figures sampled over the last minutes: events, transitions, runs by state, coordination overhead",
        query: &[],
        body: None,
        ok: (200, Some("Stats")),
        errors: &[],
        scope: Some(Scope::Metrics),
    },
    Route {
        method: "post",
        id: "pollTasks",
        path: "/api/v1/agents/{name}/poll",
        summary: "Lease up to `max` task calls of a `worker` agent (long poll)",
        query: &[],
        body: Some("WorkerPoll"),
        ok: (200, Some("Assignments")),
        errors: &[400, 413, 415, 422],
        scope: Some(Scope::Workers),
    },
    Route {
        method: "post",
        id: "reportTasks",
        path: "/api/v1/tasks/report",
        summary: "Report many leased calls at once: outputs, failures and heartbeats, a result each",
        query: &[],
        body: Some("TaskReports"),
        ok: (200, Some("TaskReportResults")),
        errors: &[400, 413, 415, 422],
        scope: Some(Scope::Workers),
    },
    Route {
        method: "post",
        id: "heartbeatTask",
        path: "/api/v1/tasks/{id}/heartbeat",
        summary: "Extend a lease from now",
        query: &[],
        body: Some("Heartbeat"),
        ok: (200, Some("LeaseResponse")),
        errors: &[400, 404, 409, 413, 415, 422],
        scope: Some(Scope::Workers),
    },
    Route {
        method: "post",
        id: "reportTaskProgress",
        path: "/api/v1/tasks/{id}/progress",
        summary: "Report a leased call's progress or partial output (on the run's event stream, coalesced; not recorded)",
        query: &[],
        body: Some("ProgressReport"),
        ok: (200, Some("LeaseResponse")),
        errors: &[400, 404, 409, 413, 415, 422],
        scope: Some(Scope::Workers),
    },
    Route {
        method: "post",
        id: "completeTask",
        path: "/api/v1/tasks/{id}/complete",
        summary: "Report a leased call's output",
        query: &[],
        body: Some("Complete"),
        ok: (200, Some("LeaseResponse")),
        errors: &[400, 404, 409, 413, 415, 422],
        scope: Some(Scope::Workers),
    },
    Route {
        method: "post",
        id: "failTask",
        path: "/api/v1/tasks/{id}/fail",
        summary: "Report a leased call's failure (retried per the task's `retry` when retryable)",
        query: &[],
        body: Some("Fail"),
        ok: (200, Some("LeaseResponse")),
        errors: &[400, 404, 409, 413, 415, 422],
        scope: Some(Scope::Workers),
    },
    Route {
        method: "get",
        id: "getMetrics",
        path: "/metrics",
        summary: "Prometheus metrics (text exposition format)",
        query: &[],
        body: None,
        ok: (200, None),
        errors: &[],
        scope: None,
    },
    Route {
        method: "get",
        id: "getHealth",
        path: "/healthz",
        summary: "The process is up",
        query: &[],
        body: None,
        ok: (200, Some("Status")),
        errors: &[],
        scope: None,
    },
    Route {
        method: "get",
        id: "getReadiness",
        path: "/readyz",
        summary: "The engine answers",
        query: &[],
        body: None,
        ok: (200, Some("Status")),
        errors: &[503],
        scope: None,
    },
    Route {
        method: "get",
        id: "getOpenApi",
        path: "/openapi.json",
        summary: "This document",
        query: &[],
        body: None,
        ok: (200, None),
        errors: &[],
        scope: None,
    },
];

/// A topic, group or member name, as the event log takes them.
const NAME: &str = r#"{"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$"}"#;

/// A duration as a string (a subset of what the server reads: `250ms`, `30s`, `5m`, `1h`).
const DURATION: &str = r#"{"type": "string", "pattern": "^[1-9][0-9]{0,5}(ms|s|m|h)$"}"#;

fn schema(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad schema literal {text}: {e}"))
}

/// `schema(text)` that also admits `null` (what `Option` fields take).
fn nullable(text: &str) -> Value {
    let mut s = schema(text);
    s["type"] = json!([s["type"].clone(), "null"]);
    s
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn schemas() -> Value {
    let offset = json!({"type": "object", "required": ["partition", "offset"], "properties": {
        "partition": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
        "offset": {"type": "integer", "minimum": 0, "maximum": u64::MAX}}});
    let lease_ms = json!({"type": "integer", "minimum": 100, "maximum": 3_600_000});
    let retry = json!({"oneOf": [
        {"type": "null"},
        {"type": "integer", "minimum": 1, "maximum": 10_000, "description": "max_attempts, default backoff"},
        {"type": "object", "additionalProperties": false, "properties": {
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10_000},
            "backoff": {"type": "object", "additionalProperties": false,
                "description": "`initial` must not be larger than `max` (422 otherwise)",
                "properties": {
                "initial": schema(DURATION), "max": schema(DURATION),
                "multiplier": {"type": "number", "minimum": 1, "maximum": 1000},
                "jitter": {"type": "number", "minimum": 0, "maximum": 1}}}}}]});
    let location = json!({"type": "object", "required": ["line", "column"], "properties": {
        "line": {"type": "integer"}, "column": {"type": "integer"}}});
    let field_error = json!({"type": "object", "required": ["code", "message", "path"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "path": {"type": "string"},
        "location": r("Location"), "hint": {"type": "string"}}});
    let plan_summary = json!({"type": "object", "required": ["tasks", "handlers", "edges", "stage_count", "max_width", "critical_path", "critical_path_seconds", "total_work_seconds", "parallelism", "redundant_edges"], "properties": {
        "tasks": {"type": "integer"}, "handlers": {"type": "integer"}, "edges": {"type": "integer"},
        "stage_count": {"type": "integer"}, "max_width": {"type": "integer"},
        "critical_path": {"type": "array", "items": {"type": "string"}},
        "critical_path_seconds": {"type": "number"}, "total_work_seconds": {"type": "number"},
        "parallelism": {"type": "number"}, "redundant_edges": {"type": "integer"}}});
    let info_props = json!({
        "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"}, "version": {"type": "integer", "minimum": 1},
        "name": {"type": ["string", "null"]}, "tenant": {"type": "string"}, "created_ms": {"type": "integer"}, "plan": r("PlanSummary")});
    let mut detail_props = info_props.as_object().cloned().unwrap_or_default();
    detail_props.insert("document".into(), r("Workflow"));
    let event_out = json!({"type": "object", "required": ["partition", "offset", "id", "type", "key", "timestamp_ms", "payload"], "properties": {
        "partition": {"type": "integer"}, "offset": {"type": "integer"}, "id": {"type": "string"},
        "type": {"type": "string"}, "key": {"type": "string"}, "timestamp_ms": {"type": "integer"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "payload": {}, "deliveries": {"type": "integer"}}});
    let task_state = json!({"type": "object", "required": ["id", "status", "attempt"], "properties": {
        "id": {"type": "string"}, "status": {"type": "string"}, "attempt": {"type": "integer"},
        "agent": {"type": "string"}, "output": {}, "error": {"type": "string"}, "reason": {"type": "string"}, "child": {"type": "string"},
        "items": {"type": "object", "required": ["total", "waiting", "running", "succeeded", "failed"], "additionalProperties": {"type": "integer"}}}});
    let execution_page = json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"type": "object", "required": ["execution_id", "status", "created_at_ms", "task_counts"], "properties": {
        "execution_id": {"type": "string"}, "workflow_id": {"type": "string"}, "workflow": {"type": "string"}, "tenant": {"type": "string"},
        "status": {"type": "string", "enum": ["executing", "paused", "completed", "failed", "cancelled"]},
        "created_at_ms": {"type": "integer"}, "reason": {"type": "string"}, "parent_id": {"type": "string"}, "rerun_of": {"type": "string"},
        "task_counts": {"type": "object", "additionalProperties": {"type": "integer"}}}}}, "next_cursor": {"type": "string"}}});
    // Apart: one `json!` this deep would pass the macro recursion limit.
    let tokens = json!({"type": "object", "required": ["prompt", "completion"],
        "properties": {"prompt": {"type": "integer"}, "completion": {"type": "integer"}}});
    let execution_status = json!({"type": "object", "required": ["execution_id", "status", "current_phase", "agents", "performance_metrics", "task_counts", "tasks"], "properties": {
            "execution_id": {"type": "string"}, "workflow_id": {"type": ["string", "null"]}, "workflow": {"type": ["string", "null"]}, "tenant": {"type": "string"},
            "status": {"type": "string", "enum": ["planning", "executing", "paused", "completed", "failed", "cancelled"]},
            "current_phase": {"type": "string", "enum": ["running", "compensating", "paused", "done"]},
            "reason": {"type": "string"}, "rerun_of": {"type": "string"}, "parent_id": {"type": "string", "description": "the execution whose task started this one"},
            "agents": {"type": "array", "items": {"type": "object", "required": ["agent_id", "status", "current_task", "progress"], "properties": {
                "agent_id": {"type": "string"}, "status": {"type": "string", "enum": ["busy", "idle"]},
                "current_task": {"type": ["string", "null"]}, "progress": {"type": "number"}}}},
            "performance_metrics": {"type": "object", "required": ["total_runtime", "agents_allocated", "tasks_completed", "coordination_overhead"], "properties": {
                "total_runtime": {"type": "number"}, "agents_allocated": {"type": "integer"}, "tasks_completed": {"type": "integer"},
                "coordination_overhead": {"type": "number"}, "dispatch_latency_us": {"type": "object"}, "retries": {"type": "integer"}, "critical_path": {"type": "array", "items": {"type": "string"}, "description": "as run: from the last task to end back through the dependency that ended last"},
                "tokens": tokens}},
            "task_counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "tasks": {"type": "array", "items": task_state}}});
    let mut all = json!({
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail", "code"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "code": {"type": "string", "enum": ["invalid-workflow", "invalid-request", "bad-request", "not-found", "method-not-allowed", "conflict", "payload-too-large", "unsupported-media-type", "uri-too-long", "headers-too-large", "unauthorized", "forbidden", "agent-not-allowed", "timeout", "unavailable", "internal"]},
            "errors": {"type": "array", "items": r("FieldError")},
            "request_id": {"type": "string", "description": "the request's id, as in its `x-request-id` answer header: find it in the server's log"}}},
        "FieldError": field_error,
        "Location": location,
        "Workflow": {"type": "object", "description": "A workflow document (docs/workflow-language.md): `tasks` and optionally `name`, `agents`, `coordination`. Beyond this shape it is checked by the workflow language (task references, cycles, agent types): 422 `invalid-workflow` with every finding.", "required": ["tasks"], "properties": {
            "tasks": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": ["string", "number"], "minLength": 1, "description": "a number is read as its text (YAML's `id: 1`)"}}}},
            "name": {"type": ["string", "number", "null"]}, "agents": {"type": "object"},
            "tenant": {"type": ["string", "integer", "null"], "pattern": "^[a-z0-9][a-z0-9-]{0,31}$", "minimum": 0, "description": "set from the token of a tenant (one naming another tenant is 403); a token without a tenant may name any; a number is read as its text (YAML's `tenant: 42`), null as leaving it out"}}},
        "PlanSummary": plan_summary,
        "WorkflowCreated": {"type": "object", "required": ["id", "version", "name", "plan"], "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"}, "version": {"type": "integer"}, "name": {"type": ["string", "null"]},
            "plan": r("PlanSummary"), "warnings": {"type": "array", "items": r("FieldError")}}},
        "WorkflowInfo": {"type": "object", "required": ["id", "version", "name", "created_ms", "plan"], "properties": info_props},
        "WorkflowPage": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": r("WorkflowInfo")}, "next_cursor": {"type": "string"}}},
        "WorkflowDetail": {"type": "object", "required": ["id", "version", "name", "created_ms", "plan", "document"], "properties": Value::Object(detail_props)},
        "RunWorkflow": {"type": "object", "required": ["document", "plan"], "properties": {"document": {"type": "object", "description": "the workflow as the engine holds it"}, "plan": r("PlanDetail")}},
        "PlanDetail": {"type": "object", "required": ["summary", "stages", "redundant_edges"], "properties": {
            "summary": r("PlanSummary"),
            "stages": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
            "redundant_edges": {"type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}},
            "schedule": {"type": "array", "description": "with ?schedule=true, in declaration order; seconds, untimed tasks counting 1 s", "items": {"type": "object", "required": ["id", "stage", "earliest_start", "latest_start", "slack"], "properties": {
                "id": {"type": "string"}, "stage": {"type": "integer"}, "earliest_start": {"type": "number"}, "latest_start": {"type": "number"}, "slack": {"type": "number"}}}}}},
        "ExecuteRequest": {"type": "object", "additionalProperties": false, "properties": {
            "input_data": {},
            "execution_options": {"type": "object", "additionalProperties": false, "properties": {
                "timeout": {"oneOf": [{"type": "null"}, schema(DURATION), {"type": "number", "minimum": 0.001, "exclusiveMaximum": 1e9}]},
                "retry_policy": retry,
                "resource_constraints": {"type": ["object", "null"], "additionalProperties": false, "properties": {"max_concurrency": {"type": ["integer", "null"], "minimum": 1, "maximum": u32::MAX}}}}}}},
        "InstancePage": {"type": "object", "required": ["task", "kind", "total", "items", "next_offset"], "properties": {
            "task": {"type": "string"}, "kind": {"type": "string", "enum": ["for_each", "loop"]}, "total": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"]},
            "items": {"type": "array", "items": {"type": "object", "required": ["index", "status", "attempt"], "properties": {
                "index": {"type": "integer"}, "status": {"type": "string", "enum": ["waiting", "running", "succeeded", "failed"]},
                "attempt": {"type": "integer"}, "agent": {"type": "string", "description": "the agent whose turn it is (a pattern's iterations)"},
                "output": {}, "error": {"type": "string"}}}}}},
        "RerunRequest": {"type": "object", "required": ["from"], "additionalProperties": false, "properties": {
            "from": {"type": "string", "description": "the task to run again, with everything downstream of it"}}},
        "ExecuteResponse": {"type": "object", "required": ["execution_id", "status", "workflow_id"], "properties": {
            "execution_id": {"type": "string"}, "status": {"type": "string"}, "workflow_id": {"type": "string"}}},
        "ExecutionStatus": execution_status,
        "ExecutionPage": execution_page,
    });
    let agents = json!({"type": "object", "required": ["agents", "truncated", "workers", "leases", "leased"], "properties": {
            "agents": {"type": "array", "items": {"type": "object", "required": ["name", "kind", "operator", "in_flight", "queued", "calls", "failures", "breaker", "waiting", "leased"], "properties": {
                "name": {"type": "string"}, "kind": {"type": "string"}, "operator": {"type": "boolean", "description": "defined in the server's config"},
                "in_flight": {"type": "integer"}, "concurrency": {"type": "integer", "description": "absent: no limit"}, "queued": {"type": "integer", "description": "calls waiting for a concurrency slot"},
                "calls": {"type": "integer"}, "failures": {"type": "integer"}, "breaker": {"enum": ["closed", "open", "half_open"]},
                "waiting": {"type": "integer", "description": "worker agents: calls waiting for a worker"}, "leased": {"type": "integer", "description": "worker agents: calls leased"}}}},
            "truncated": {"type": "boolean", "description": "more than 1000 agents: the rest are left out"},
            "workers": {"type": "array", "items": {"type": "object", "required": ["name", "agents", "polling", "leases", "last_seen_ms"], "properties": {
                "name": {"type": "string"}, "agents": {"type": "array", "items": {"type": "string"}}, "polling": {"type": "integer", "description": "polls waiting now"}, "leases": {"type": "integer"}, "last_seen_ms": {"type": "integer"}}}},
            "leases": {"type": "array", "description": "the 200 soonest to expire", "items": {"type": "object", "required": ["agent", "worker", "run", "task", "attempt", "expires_ms"], "properties": {
                "agent": {"type": "string"}, "worker": {"type": "string"}, "run": {"type": "string"}, "task": {"type": "string"}, "attempt": {"type": "integer"}, "expires_ms": {"type": "integer"}}}},
            "leased": {"type": "integer"},
            "instances": {"type": "array", "description": "with several instances sharing a PostgreSQL state store", "items": {"type": "object", "required": ["id", "name", "started_at_ms", "lease_left_ms", "runs", "this"], "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"}, "address": {"type": "string"}, "started_at_ms": {"type": "integer"}, "lease_left_ms": {"type": "integer"}, "runs": {"type": "integer"}, "this": {"type": "boolean"}}}}}});
    let stats = json!({"type": "object", "required": ["interval_ms", "samples"], "properties": {
            "interval_ms": {"type": "integer"},
            "samples": {"type": "array", "description": "oldest first; counters count since start", "items": {"type": "object", "required": ["t_ms", "events_published", "transitions", "runs_running", "runs_paused", "runs_compensating", "runs_queued", "runs_completed", "runs_failed", "runs_cancelled", "ready_queue", "dispatch"], "properties": {
                "t_ms": {"type": "integer"}, "events_published": {"type": "integer"}, "transitions": {"type": "integer"},
                "runs_running": {"type": "integer"}, "runs_paused": {"type": "integer"}, "runs_compensating": {"type": "integer"}, "runs_queued": {"type": "integer"},
                "runs_completed": {"type": "integer"}, "runs_failed": {"type": "integer"}, "runs_cancelled": {"type": "integer"}, "ready_queue": {"type": "integer"},
                "dispatch": {"type": "object", "description": "ready to dispatched, over the tasks dispatched since the previous sample", "required": ["count", "p50_us", "p99_us", "max_us"], "properties": {
                    "count": {"type": "integer"}, "p50_us": {"type": "number"}, "p99_us": {"type": "number"}, "max_us": {"type": "number"}}}}}}}});
    let rest = json!({
        "ControlResponse": {"type": "object", "required": ["execution_id", "action"], "properties": {"execution_id": {"type": "string"}, "action": {"type": "string"}}},
        "PublishRequest": {"type": "object", "required": ["events"], "additionalProperties": false, "properties": {
            "topic": nullable(NAME),
            "events": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"type": "object", "required": ["type"], "additionalProperties": false, "properties": {
                "type": {"type": "string"}, "key": {"type": "string"}, "payload": {},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "id": {"type": ["string", "null"], "pattern": "^[0-9a-fA-F]{32}$"}}}}}},
        "Offset": offset,
        "PublishResponse": {"type": "object", "required": ["topic", "offsets"], "properties": {"topic": {"type": "string"}, "offsets": {"type": "array", "items": r("Offset")}}},
        "EventOut": event_out,
        "PollResponse": {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": r("EventOut")}}},
        "AckRequest": {"type": "object", "required": ["offsets"], "additionalProperties": false, "properties": {"offsets": {"type": "array", "items": r("Offset")}}},
        "AckResponse": {"type": "object", "required": ["acknowledged"], "properties": {"acknowledged": {"type": "integer"}}},
        "Pending": {"type": "object", "required": ["pending"], "properties": {"pending": {"type": "array", "description": "oldest delivery first", "items": {"type": "object", "required": ["partition", "offset", "member", "since_ms", "deliveries", "claimable_at_ms"], "properties": {
            "partition": {"type": "integer"}, "offset": {"type": "integer"}, "member": {"type": "string"}, "since_ms": {"type": "integer"}, "deliveries": {"type": "integer"}, "claimable_at_ms": {"type": "integer", "description": "when another member may take it"}}}}}},
        "RedriveRequest": {"type": "object", "additionalProperties": false, "properties": {"max": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 10000, "description": "most letters moved, oldest first"}}},
        "Agents": agents,
        "Stats": stats,
        "RedriveResponse": {"type": "object", "required": ["topic", "moved", "remaining"], "properties": {"topic": {"type": "string", "description": "where the letters went back"}, "moved": {"type": "integer"}, "remaining": {"type": "integer", "description": "letters not redriven yet"}}},
        "WorkerPoll": {"type": "object", "additionalProperties": false, "properties": {
            "max": {"type": "integer", "minimum": 1, "maximum": 1000},
            "wait_ms": {"type": "integer", "minimum": 0, "maximum": u64::MAX, "description": "default 20000; at most 60000 and the server's long_poll_max_ms"},
            "lease_ms": lease_ms,
            "worker": {"type": ["string", "null"], "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$", "description": "the polling worker's name (e.g. host:pid), shown in GET /api/v1/agents; no control characters"}}},
        "Assignments": {"type": "object", "required": ["assignments"], "properties": {"assignments": {"type": "array", "items": {"type": "object", "required": ["id", "run", "task", "attempt", "input", "lease_expires_ms"], "properties": {
            "id": {"type": "string"}, "run": {"type": "string"}, "task": {"type": "string"}, "attempt": {"type": "integer"}, "input": {}, "lease_expires_ms": {"type": "integer"}}}}}},
        "Heartbeat": {"type": "object", "additionalProperties": false, "properties": {"lease_ms": {"type": ["integer", "null"], "minimum": 100, "maximum": 3_600_000}}},
        "Complete": {"type": "object", "additionalProperties": false, "properties": {"output": {}}},
        "ProgressReport": {"type": "object", "required": ["progress"], "additionalProperties": false, "properties": {"progress": {}}},
        "Fail": {"type": "object", "required": ["message"], "additionalProperties": false, "properties": {"message": {"type": "string"}, "retryable": {"type": "boolean"}}},
        "LeaseResponse": {"type": "object", "required": ["id", "status"], "properties": {"id": {"type": "string"}, "status": {"type": "string"}}},
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    });
    // Split in three: one `json!` this size passes the macro recursion limit.
    let workers_and_topics = json!({
        "TaskReports": {"type": "object", "required": ["reports"], "additionalProperties": false, "properties": {"reports": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
            "type": "object", "required": ["id"], "additionalProperties": false,
            "description": "exactly one of complete, fail and heartbeat (null is the same as absent)",
            "properties": {"id": {"type": "string"},
                "complete": {"anyOf": [r("Complete"), {"type": "null"}]},
                "fail": {"anyOf": [r("Fail"), {"type": "null"}]},
                "heartbeat": {"anyOf": [r("Heartbeat"), {"type": "null"}]}},
            "oneOf": [
                {"required": ["complete"], "properties": {"complete": r("Complete"), "fail": {"type": "null"}, "heartbeat": {"type": "null"}}},
                {"required": ["fail"], "properties": {"fail": r("Fail"), "complete": {"type": "null"}, "heartbeat": {"type": "null"}}},
                {"required": ["heartbeat"], "properties": {"heartbeat": r("Heartbeat"), "complete": {"type": "null"}, "fail": {"type": "null"}}}]}}}},
        "TaskReportResults": {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": {"type": "object", "required": ["id", "status"], "properties": {
            "id": {"type": "string"}, "status": {"type": "string", "enum": ["completed", "failed", "extended", "expired", "unknown"]}}}}}},
        "Topics": {"type": "object", "required": ["topics"], "properties": {"topics": {"type": "array", "items": {"type": "object", "required": ["name", "events", "bytes", "partitions", "groups"], "properties": {
            "name": {"type": "string"}, "events": {"type": "integer"}, "bytes": {"type": "integer"},
            "partitions": {"type": "array", "items": {"type": "object", "required": ["partition", "start", "end", "bytes"], "properties": {
                "partition": {"type": "integer"}, "start": {"type": "integer"}, "end": {"type": "integer"}, "bytes": {"type": "integer"}}}},
            "groups": {"type": "array", "items": {"type": "object", "required": ["name", "lag", "pending", "members"], "properties": {
                "name": {"type": "string"}, "lag": {"type": "integer"}, "pending": {"type": "integer"},
                "members": {"type": "array", "items": {"type": "object", "required": ["name", "last_seen_ms", "pending"], "properties": {
                    "name": {"type": "string"}, "last_seen_ms": {"type": "integer"}, "pending": {"type": "integer"}}}}}}}}}}}},
        "ReadResponse": {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": r("EventOut")}, "next_from": {"type": "integer"}}},
    });
    for more in [rest, workers_and_topics] {
        if let (Some(all), Value::Object(more)) = (all.as_object_mut(), more) {
            all.extend(more);
        }
    }
    all
}

/// Every schema with its description (from [`SCHEMA_DOCS`]) unless it has
/// its own.
fn described(mut all: Value) -> Value {
    if let Some(all) = all.as_object_mut() {
        for (name, schema) in all.iter_mut() {
            if let (Some(schema), Some((_, doc))) = (
                schema.as_object_mut(),
                SCHEMA_DOCS.iter().find(|(n, _)| n == name),
            ) {
                schema.entry("description").or_insert_with(|| json!(doc));
            }
        }
    }
    all
}

fn status_text(s: u16) -> &'static str {
    match s {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Malformed request (bad-request)",
        401 => "Missing or wrong bearer token (unauthorized)",
        403 => {
            "The token lacks the operation's scope (insufficient-scope, see x-baton-scope), or what is asked is not allowed (forbidden; agent-not-allowed: the workflow defines agents the server does not let callers define)"
        }
        404 => "Not found (not-found)",
        405 => "Not a method this path takes (method-not-allowed)",
        409 => "Conflicts with the current state (conflict)",
        413 => "Over a size limit (payload-too-large)",
        415 => "Unsupported media type",
        422 => "Invalid request or workflow (invalid-request, invalid-workflow)",
        429 => "Over the caller's rate limit (rate-limited; Retry-After says when to try again)",
        503 => "Unavailable (stopping) or over the request timeout (unavailable, timeout)",
        _ => "Internal error",
    }
}

/// Long polls and event streams: not bound by the request timeout.
pub fn is_long(method: &str, path: &str) -> bool {
    method.eq_ignore_ascii_case("get") && path.ends_with("/events") || path.ends_with("/poll")
}

/// The sections of the API (OpenAPI tags), with what each holds.
const TAGS: &[(&str, &str)] = &[
    (
        "workflows",
        "Workflows: created (validated and planned), listed, read, planned",
    ),
    (
        "executions",
        "Runs of workflows: started, followed, paused, resumed, cancelled, rerun; their event streams",
    ),
    (
        "events",
        "The event log: publish, consumer groups (poll, ack, pending), topics, dead letters, the audit trail",
    ),
    (
        "workers",
        "Remote workers serving `worker` agents: poll for calls, heartbeat, progress, complete, fail",
    ),
    (
        "server",
        "What the server is doing: agents and workers, live samples, health, readiness, metrics, this document",
    ),
];

/// The tag of the route at `path`.
pub fn tag(path: &str) -> &'static str {
    let section = path
        .strip_prefix("/api/v1/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    match section {
        "workflows" => "workflows",
        "executions" => "executions",
        "events" | "topics" | "audit" => "events",
        "tasks" => "workers",
        "agents" if path.ends_with("/poll") => "workers",
        _ => "server",
    }
}

/// What every schema of `components/schemas` is.
const SCHEMA_DOCS: &[(&str, &str)] = &[
    (
        "Problem",
        "An error (RFC 9457 problem+json) with a stable `code`, the request id and, for invalid input, every field error",
    ),
    (
        "Location",
        "A line and column (1-based) in the document sent",
    ),
    (
        "FieldError",
        "One invalid field: its JSON path, what was expected, where in the document, a hint",
    ),
    (
        "Workflow",
        "A workflow document (docs/workflow-language.md): tasks, their agents and dependencies",
    ),
    (
        "PlanSummary",
        "A plan's figures: stages, width, critical path and its length, total work, parallelism",
    ),
    (
        "WorkflowCreated",
        "A workflow stored: its id, version and plan summary",
    ),
    ("WorkflowInfo", "A workflow in a list"),
    (
        "WorkflowPage",
        "A page of workflows, newest first, with the cursor of the next",
    ),
    (
        "WorkflowDetail",
        "A workflow: the document as sent (secrets redacted) and its plan summary",
    ),
    (
        "PlanDetail",
        "A plan: stages, critical path, redundant edges and, when asked, every task's schedule",
    ),
    (
        "ExecuteRequest",
        "How to start a run: its input and options (timeout, retry policy, concurrency)",
    ),
    (
        "InstancePage",
        "A page of a fanned-out task's instances, in item order",
    ),
    (
        "RerunRequest",
        "Where a finished run starts again: a task, and everything downstream of it",
    ),
    ("ExecuteResponse", "A run accepted: its id"),
    (
        "RunWorkflow",
        "The workflow a run runs, as the engine holds it (its child runs' workflows inlined), and its plan",
    ),
    (
        "ExecutionStatus",
        "A run: its state, every task's, progress, timing, decisions and output",
    ),
    (
        "ExecutionPage",
        "A page of runs, newest first, with the cursor of the next",
    ),
    ("ControlResponse", "A pause, resume or cancel accepted"),
    (
        "PublishRequest",
        "Events to append to a topic, in one batch (at most 10,000)",
    ),
    ("Offset", "An event's place: partition and offset"),
    (
        "PublishResponse",
        "Where each event of the batch was stored, in the batch's order",
    ),
    (
        "EventOut",
        "An event as read or delivered: its place, id, type, key, payload, headers and deliveries",
    ),
    (
        "PollResponse",
        "Events delivered to a consumer group's member; acknowledge them by offset",
    ),
    ("AckRequest", "Offsets a consumer group is done with"),
    (
        "AckResponse",
        "How many offsets were pending and are now acknowledged",
    ),
    (
        "Pending",
        "A consumer group's delivered, unacknowledged events: who holds each, since when",
    ),
    (
        "RedriveRequest",
        "How many dead letters to publish again to their topic",
    ),
    (
        "Agents",
        "Every agent's calls and breaker, the remote workers and their leases, the instances",
    ),
    (
        "Stats",
        "Samples of the server's counters, taken every `interval_ms`",
    ),
    (
        "RedriveResponse",
        "Dead letters moved back to their topic, and how many are left",
    ),
    (
        "WorkerPoll",
        "A remote worker asking for calls: how many, how long to wait, the lease",
    ),
    (
        "Assignments",
        "Calls leased to a worker, each with its lease id and input",
    ),
    ("Heartbeat", "A lease extended"),
    ("Complete", "A call's output"),
    (
        "ProgressReport",
        "Progress or partial output of a call still running (not durable)",
    ),
    ("Fail", "A call failed: why, and whether a retry may help"),
    ("LeaseResponse", "What became of a lease"),
    ("Status", "A one-word status"),
    (
        "TaskReports",
        "Several workers' reports in one request: complete, fail or heartbeat each",
    ),
    ("TaskReportResults", "What became of each report, in order"),
    (
        "Topics",
        "Every topic: events and bytes retained, partitions, consumer groups with lag and pending",
    ),
    (
        "ReadResponse",
        "A partition's events from an offset, and where the next read starts",
    ),
];

/// An OpenAPI link: what a successful answer of one operation gives the
/// next (the ids it created), so that clients, and schemathesis' stateful
/// phase, can chain calls on real resources.
pub struct Link {
    /// The operation answering.
    pub from: &'static str,
    /// The link's name.
    pub name: &'static str,
    /// The operation it feeds.
    pub to: &'static str,
    /// Which of its parameters.
    pub parameter: &'static str,
    /// Where the value is in the answer (a runtime expression).
    pub value: &'static str,
    /// What following it does.
    pub description: &'static str,
}

/// Every link: created workflows to what takes their id, started runs to
/// what takes theirs, a publish to its topic's reads.
pub const LINKS: &[Link] = &[
    Link {
        from: "createWorkflow",
        name: "GetWorkflow",
        to: "getWorkflow",
        parameter: "id",
        value: "$response.body#/id",
        description: "the workflow created",
    },
    Link {
        from: "createWorkflow",
        name: "GetWorkflowPlan",
        to: "getWorkflowPlan",
        parameter: "id",
        value: "$response.body#/id",
        description: "its plan",
    },
    Link {
        from: "createWorkflow",
        name: "ExecuteWorkflow",
        to: "executeWorkflow",
        parameter: "id",
        value: "$response.body#/id",
        description: "a run of it",
    },
    Link {
        from: "executeWorkflow",
        name: "GetExecution",
        to: "getExecution",
        parameter: "id",
        value: "$response.body#/execution_id",
        description: "the run started",
    },
    Link {
        from: "executeWorkflow",
        name: "GetExecutionWorkflow",
        to: "getExecutionWorkflow",
        parameter: "id",
        value: "$response.body#/execution_id",
        description: "the workflow the run runs",
    },
    Link {
        from: "executeWorkflow",
        name: "PauseExecution",
        to: "pauseExecution",
        parameter: "id",
        value: "$response.body#/execution_id",
        description: "pause the run",
    },
    Link {
        from: "executeWorkflow",
        name: "ResumeExecution",
        to: "resumeExecution",
        parameter: "id",
        value: "$response.body#/execution_id",
        description: "resume the run",
    },
    Link {
        from: "executeWorkflow",
        name: "CancelExecution",
        to: "cancelExecution",
        parameter: "id",
        value: "$response.body#/execution_id",
        description: "cancel the run",
    },
    Link {
        from: "executeWorkflow",
        name: "RerunExecution",
        to: "rerunExecution",
        parameter: "id",
        value: "$response.body#/execution_id",
        description: "run it again from a task",
    },
    Link {
        from: "executeWorkflow",
        name: "StreamExecutionEvents",
        to: "streamExecutionEvents",
        parameter: "id",
        value: "$response.body#/execution_id",
        description: "the run's events",
    },
    Link {
        from: "publishEvents",
        name: "ReadTopic",
        to: "readTopic",
        parameter: "topic",
        value: "$response.body#/topic",
        description: "the topic published to",
    },
    Link {
        from: "publishEvents",
        name: "PollGroup",
        to: "pollGroup",
        parameter: "topic",
        value: "$response.body#/topic",
        description: "a consumer group of the topic",
    },
    Link {
        from: "publishEvents",
        name: "ListPending",
        to: "listPending",
        parameter: "topic",
        value: "$response.body#/topic",
        description: "a group's pending events on the topic",
    },
    Link {
        from: "publishEvents",
        name: "AckEvents",
        to: "ackEvents",
        parameter: "topic",
        value: "$response.body#/topic",
        description: "acknowledge as a group of the topic",
    },
];

/// Request bodies shown as examples (valid: schemathesis sends them).
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Workflow",
        r#"{"name": "hello", "agents": {"writer": {"type": "noop"}}, "tasks": [{"id": "fetch", "agent": "writer"}, {"id": "summarize", "agent": "writer", "depends_on": ["fetch"]}]}"#,
    ),
    (
        "ExecuteRequest",
        r#"{"input_data": {"topic": "quarterly report"}, "execution_options": {"timeout": "5m"}}"#,
    ),
    (
        "PublishRequest",
        r#"{"topic": "orders", "events": [{"type": "order.created", "key": "customer-42", "payload": {"total": 12.5}}]}"#,
    ),
    (
        "AckRequest",
        r#"{"offsets": [{"partition": 0, "offset": 0}]}"#,
    ),
    (
        "WorkerPoll",
        r#"{"max": 10, "wait_ms": 20000, "lease_ms": 30000, "worker": "host-1:4242"}"#,
    ),
    ("Complete", r#"{"output": {"summary": "done"}}"#),
    (
        "Fail",
        r#"{"message": "the model timed out", "retryable": true}"#,
    ),
    ("RerunRequest", r#"{"from": "summarize"}"#),
];

/// The document.
pub fn document() -> Value {
    let problem = json!({"application/problem+json": {"schema": r("Problem")}});
    let mut paths = Map::new();
    for route in ROUTES {
        let mut params = Vec::new();
        for seg in route.path.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let schema = match name {
                    "topic" | "group" => self::schema(NAME),
                    _ => json!({"type": "string"}),
                };
                params
                    .push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
            }
        }
        for (name, ty, desc) in route.query {
            params.push(json!({"name": name, "in": "query", "required": false, "description": desc, "schema": schema(ty)}));
        }
        let mut responses = Map::new();
        let ok_content = match (route.ok.1, route.path) {
            (Some(s), _) => json!({"application/json": {"schema": r(s)}}),
            (None, "/metrics") => json!({"text/plain": {"schema": {"type": "string"}}}),
            (None, "/openapi.json") => json!({"application/json": {"schema": {"type": "object"}}}),
            (None, _) => json!({"text/event-stream": {"schema": {"type": "string"}}}),
        };
        let mut ok = json!({"description": status_text(route.ok.0), "content": ok_content});
        let links: Map<String, Value> = LINKS
            .iter()
            .filter(|l| l.from == route.id)
            .map(|l| {
                (
                    l.name.to_string(),
                    json!({"operationId": l.to, "parameters": {l.parameter: l.value},
                        "description": l.description}),
                )
            })
            .collect();
        if !links.is_empty() {
            ok["links"] = Value::Object(links);
        }
        responses.insert(route.ok.0.to_string(), ok);
        let mut errors: Vec<u16> = route.errors.to_vec();
        if route.scope.is_some() {
            errors.extend([401, 403, 429]);
        }
        // Every path answers other methods 405 (with `Allow`).
        errors.push(405);
        // Every request but the long ones is answered 503 after the request timeout.
        if !is_long(route.method, route.path) {
            errors.push(503);
        }
        errors.push(500);
        errors.sort_unstable();
        errors.dedup();
        for s in errors {
            responses.insert(
                s.to_string(),
                json!({"description": status_text(s), "content": problem}),
            );
        }
        let mut op = json!({
            "summary": route.summary,
            "operationId": route.id,
            "tags": [tag(route.path)],
            "parameters": params,
            "responses": responses,
        });
        if let Some(body) = route.body {
            let mut content = json!({"application/json": {"schema": r(body)}});
            if let Some((_, example)) = EXAMPLES.iter().find(|(name, _)| *name == body) {
                content["application/json"]["example"] =
                    serde_json::from_str(example).unwrap_or(Value::Null);
            }
            if body == "Workflow" {
                content["application/yaml"] = json!({"schema": {"type": "string"}});
            }
            // Bodies whose fields all have defaults may be left out.
            let optional = matches!(
                body,
                "ExecuteRequest" | "WorkerPoll" | "Heartbeat" | "Complete" | "RedriveRequest"
            );
            op["requestBody"] = json!({"required": !optional, "content": content});
        }
        match route.scope {
            Some(scope) => op["x-baton-scope"] = json!(scope.name()),
            None => op["security"] = json!([]),
        }
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Baton",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Baton's HTTP API: workflows, executions, events and workers. Errors are application/problem+json with a stable `code`. See docs/api.md."
        },
        "servers": [{"url": "/", "description": "the server that serves this document"}],
        "tags": TAGS.iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": described(schemas()),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
    })
}

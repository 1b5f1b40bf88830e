//! Workflows posted to the server: validated and planned once, kept in memory, and
//! persisted one file per workflow under `<data-dir>/workflows/` (written to a
//! temporary file and renamed, so a crash never leaves half a file); and the
//! executions' workflow ids, appended to `<data-dir>/executions.jsonl`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use baton_api::{FieldError, Location, PlanSummary};
use baton_engine::Spec;
use baton_engine::store::RunId;
use baton_model::{Checked, Diagnostic, Format, Limits, Report, Source};
use baton_plan::Plan;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;

/// A stored workflow: what lists show, always in memory. What it compiles
/// to ([`Compiled`]) is kept for the most recently used only, and read back
/// from its file when asked again ([`Catalog::compiled`]), so that a server
/// taking new workflows all day does not grow by each one's plan.
pub struct Entry {
    /// Its id.
    pub id: u64,
    /// 1, 2, ... per name.
    pub version: u32,
    /// Its name.
    pub name: Option<String>,
    /// Its tenant.
    pub tenant: Option<Arc<str>>,
    /// When it was posted, ms since the epoch.
    pub created_ms: u64,
    /// The plan's figures.
    pub summary: PlanSummary,
    /// What it compiles to, while it is among the recently used.
    compiled: Mutex<Option<Arc<Compiled>>>,
}

/// A workflow validated and planned.
pub struct Compiled {
    /// The workflow as JSON (YAML documents are stored converted).
    pub document: Value,
    /// Validated.
    pub checked: Checked,
    /// Planned.
    pub plan: Arc<Plan>,
    /// The spec for executions without options, built on first use.
    pub spec: OnceLock<Arc<Spec>>,
}

/// How many workflows keep what they compile to in memory (the most
/// recently used).
pub const RESIDENT: usize = 1024;

/// What a workflow file holds.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    version: u32,
    created_ms: u64,
    document: Value,
}

#[derive(Default)]
struct Inner {
    /// In creation order; a list cursor is a position here.
    order: Vec<Arc<Entry>>,
    by_id: HashMap<u64, Arc<Entry>>,
    /// The newest version by tenant and name (each tenant numbers its own).
    versions: HashMap<(Option<Arc<str>>, String), u32>,
    /// The entries holding what they compile to, oldest loaded first.
    resident: std::collections::VecDeque<u64>,
}

/// The workflows.
pub struct Catalog {
    dir: PathBuf,
    inner: RwLock<Inner>,
    /// How many entries keep what they compile to.
    resident: usize,
}

/// What `executions.jsonl` holds per execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    /// The run.
    pub run: String,
    /// Its workflow.
    pub workflow: String,
    /// When it was submitted.
    pub created_ms: u64,
    /// When `execution_options.timeout` cancels it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// Executions by run id.
pub struct Executions {
    file: Mutex<Option<std::fs::File>>,
    map: RwLock<HashMap<RunId, Execution>>,
    timed_out: Mutex<foldhash::HashSet<RunId>>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Validates and plans a document; every finding becomes a located [`FieldError`].
pub fn compile(source: &Source) -> Result<(Checked, Plan), ApiError> {
    let checked = match baton_model::load(source) {
        Ok(c) => c,
        Err(baton_model::Error::Invalid { report, .. }) => return Err(invalid(&report)),
        Err(baton_model::Error::Syntax {
            location, message, ..
        }) => {
            return Err(ApiError::InvalidWorkflow {
                detail: format!("the workflow is not well-formed: {message}"),
                errors: vec![FieldError {
                    code: "syntax".into(),
                    message,
                    path: "$".into(),
                    location: location.map(|l| Location {
                        line: l.line,
                        column: l.column,
                    }),
                    hint: None,
                }],
            });
        }
        Err(e) => return Err(ApiError::invalid("$", e.to_string())),
    };
    match baton_plan::plan_checked(&checked, &baton_plan::Options::default()) {
        Ok(plan) => Ok((checked, plan)),
        Err(d) => {
            let mut report = Report::default();
            report.push(d);
            source.locate(&mut report);
            Err(invalid(&report))
        }
    }
}

fn invalid(report: &Report) -> ApiError {
    let errors: Vec<FieldError> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == baton_model::Severity::Error)
        .map(field_error)
        .collect();
    let first = errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    ApiError::InvalidWorkflow {
        detail: format!(
            "the workflow has {} error(s){}; the first: {first}",
            report.error_count,
            if report.omitted > 0 {
                format!(" ({} not listed)", report.omitted)
            } else {
                String::new()
            }
        ),
        errors,
    }
}

/// A model diagnostic as an API finding.
pub fn field_error(d: &Diagnostic) -> FieldError {
    FieldError {
        code: d.code.into(),
        message: d.message.clone(),
        path: d.path.to_string(),
        location: d.location.map(|l| Location {
            line: l.line,
            column: l.column,
        }),
        hint: d.hint.clone(),
    }
}

/// The figures of a plan, with task names.
pub fn summarize(plan: &Plan) -> PlanSummary {
    let s = plan.summary();
    PlanSummary {
        tasks: s.tasks,
        handlers: s.handlers,
        edges: s.edges,
        stage_count: s.stage_count,
        max_width: s.max_width,
        critical_path: s
            .critical_path
            .tasks
            .iter()
            .map(|&t| plan.name(t).to_string())
            .collect(),
        critical_path_seconds: s.critical_path.length as f64 / 1e6,
        total_work_seconds: s.total_work as f64 / 1e6,
        parallelism: s.parallelism,
        redundant_edges: s.redundant_edges,
    }
}

impl Catalog {
    /// Opens (creating) `dir` and loads the workflows in it.
    pub fn open(dir: &Path) -> std::io::Result<Catalog> {
        Catalog::open_keeping(dir, RESIDENT)
    }

    /// [`Catalog::open`], keeping what at most `resident` workflows compile
    /// to in memory.
    pub fn open_keeping(dir: &Path, resident: usize) -> std::io::Result<Catalog> {
        std::fs::create_dir_all(dir)?;
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            inner: RwLock::default(),
            resident: resident.max(1),
        };
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            match serde_json::from_str::<Stored>(&text) {
                Ok(s) => stored.push(s),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable workflow file")
                }
            }
        }
        stored.sort_by_key(|s| s.created_ms);
        for s in stored {
            let Ok(id) = u64::from_str_radix(&s.id, 16) else {
                continue;
            };
            let text = serde_json::to_string(&s.document).unwrap_or_default();
            match compile(&Source::from_str(&s.id, &text, Format::Json)) {
                Ok((checked, plan)) => {
                    catalog.insert(id, s.version, s.created_ms, s.document, checked, plan);
                }
                Err(e) => {
                    tracing::warn!(id = s.id, error = %e, "skipping a stored workflow that no longer validates")
                }
            }
        }
        Ok(catalog)
    }

    fn insert(
        &self,
        id: u64,
        version: u32,
        created_ms: u64,
        document: Value,
        checked: Checked,
        plan: Plan,
    ) -> Arc<Entry> {
        let name = checked.workflow.name.clone();
        let tenant: Option<Arc<str>> = checked.workflow.tenant.as_deref().map(Arc::from);
        let entry = Arc::new(Entry {
            id,
            version,
            name: name.clone(),
            tenant: tenant.clone(),
            created_ms,
            summary: summarize(&plan),
            compiled: Mutex::new(None),
        });
        let compiled = Arc::new(Compiled {
            document,
            checked,
            plan: Arc::new(plan),
            spec: OnceLock::new(),
        });
        {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            if let Some(existing) = inner.by_id.get(&id) {
                return existing.clone();
            }
            if let Some(name) = name {
                let v = inner.versions.entry((tenant, name)).or_insert(0);
                *v = (*v).max(version);
            }
            inner.order.push(entry.clone());
            inner.by_id.insert(id, entry.clone());
        }
        self.keep(&entry, compiled);
        entry
    }

    /// Keeps `compiled` with `entry`, and lets go of what the least recently
    /// loaded entries compiled to past [`RESIDENT`].
    fn keep(&self, entry: &Entry, compiled: Arc<Compiled>) {
        *entry.compiled.lock().unwrap_or_else(|e| e.into_inner()) = Some(compiled);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.resident.push_back(entry.id);
        while inner.resident.len() > self.resident {
            let Some(old) = inner.resident.pop_front() else {
                break;
            };
            // An entry loaded again since is further back in the queue too.
            if inner.resident.contains(&old) {
                continue;
            }
            if let Some(e) = inner.by_id.get(&old) {
                *e.compiled.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }

    /// What `entry` compiles to: kept from its last use, or read back from
    /// its file and compiled again.
    pub fn compiled(&self, entry: &Entry) -> Result<Arc<Compiled>, ApiError> {
        if let Some(c) = entry
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let name = format!("{:016x}", entry.id);
        let path = self.dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ApiError::Internal(format!("reading workflow {name}: {e}")))?;
        let stored: Stored = serde_json::from_str(&text)
            .map_err(|e| ApiError::Internal(format!("reading workflow {name}: {e}")))?;
        let document = serde_json::to_string(&stored.document).unwrap_or_default();
        let (checked, plan) = compile(&Source::from_str(&name, &document, Format::Json))?;
        let compiled = Arc::new(Compiled {
            document: stored.document,
            checked,
            plan: Arc::new(plan),
            spec: OnceLock::new(),
        });
        self.keep(entry, compiled.clone());
        Ok(compiled)
    }

    /// Validates, plans and stores a posted workflow; `admit` may refuse it
    /// (before anything is written). A workflow posted for `tenant` belongs
    /// to it (one that names another tenant is refused); without one, the
    /// document's own `tenant` stands.
    pub fn create(
        &self,
        body: Vec<u8>,
        format: Option<Format>,
        tenant: Option<&str>,
        admit: impl FnOnce(&Checked) -> Result<(), ApiError>,
    ) -> Result<Arc<Entry>, ApiError> {
        let limits = Limits {
            max_bytes: u64::MAX,
        };
        let source = Source::from_bytes("request body", body, format, limits).map_err(|e| {
            ApiError::InvalidWorkflow {
                detail: e.to_string(),
                errors: Vec::new(),
            }
        })?;
        let (mut checked, plan) = compile(&source)?;
        if let Some(tenant) = tenant {
            match checked.workflow.tenant.as_deref() {
                Some(other) if other != tenant => {
                    return Err(ApiError::Forbidden(format!(
                        "the workflow names tenant `{other}`, and this token acts for tenant `{tenant}`: leave `tenant` out (it is set from the token)"
                    )));
                }
                _ => checked.workflow.tenant = Some(tenant.to_string()),
            }
        }
        admit(&checked)?;
        let document = serde_json::to_value(&checked.workflow)
            .map_err(|e| ApiError::Internal(format!("serializing a workflow: {e}")))?;
        let id = loop {
            let id = baton_events::EventId::generate().0 as u64;
            if id != 0 && self.get(id).is_none() {
                break id;
            }
        };
        // The version is taken under the lock; the file is written outside it.
        let version = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            checked.workflow.name.as_ref().map_or(1, |n| {
                let key = (checked.workflow.tenant.as_deref().map(Arc::from), n.clone());
                inner.versions.get(&key).map_or(1, |v| v + 1)
            })
        };
        let created_ms = now_ms();
        let stored = Stored {
            id: format!("{id:016x}"),
            version,
            created_ms,
            document,
        };
        self.persist(&stored)
            .map_err(|e| ApiError::Internal(format!("writing workflow {}: {e}", stored.id)))?;
        Ok(self.insert(id, version, created_ms, stored.document, checked, plan))
    }

    fn persist(&self, stored: &Stored) -> std::io::Result<()> {
        let path = self.dir.join(format!("{}.json", stored.id));
        let tmp = self.dir.join(format!(".{}.json.tmp", stored.id));
        let mut f = std::fs::File::create(&tmp)?;
        serde_json::to_writer(&mut f, stored)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Adds a workflow posted to another instance sharing this one's state store;
    /// `None` if it does not validate here (a newer instance's workflow, say).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn add_shared(
        &self,
        id: u64,
        version: u32,
        created_ms: u64,
        document: Value,
    ) -> Option<Arc<Entry>> {
        if let Some(entry) = self.get(id) {
            return Some(entry);
        }
        let text = serde_json::to_string(&document).ok()?;
        let name = format!("{id:016x}");
        match compile(&Source::from_str(&name, &text, Format::Json)) {
            Ok((checked, plan)) => {
                // Kept on disk too: what it compiles to is read back from there.
                let stored = Stored {
                    id: name.clone(),
                    version,
                    created_ms,
                    document,
                };
                if let Err(e) = self.persist(&stored) {
                    tracing::warn!(id = name, error = %e, "cannot keep a shared workflow on disk");
                    return None;
                }
                Some(self.insert(id, version, created_ms, stored.document, checked, plan))
            }
            Err(e) => {
                tracing::warn!(id = name, error = %e, "a shared workflow does not validate here");
                None
            }
        }
    }

    /// The workflow of `tenant` named `name`: its `version`, or its newest.
    pub fn find(
        &self,
        tenant: Option<&str>,
        name: &str,
        version: Option<u32>,
    ) -> Option<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .order
            .iter()
            .rev()
            .find(|e| {
                e.name.as_deref() == Some(name)
                    && e.tenant.as_deref() == tenant
                    && version.is_none_or(|v| e.version == v)
            })
            .cloned()
    }

    /// A workflow by id.
    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_id.get(&id).cloned()
    }

    /// Up to `limit` workflows, newest first, from position `cursor` (exclusive
    /// upper bound; `None` for the newest), of `tenant` only when one is
    /// given; returns the next cursor.
    pub fn list(
        &self,
        tenant: Option<&str>,
        limit: usize,
        cursor: Option<usize>,
    ) -> (Vec<Arc<Entry>>, Option<usize>) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let end = cursor.unwrap_or(inner.order.len()).min(inner.order.len());
        let Some(tenant) = tenant else {
            let start = end.saturating_sub(limit);
            let items = inner.order[start..end].iter().rev().cloned().collect();
            return (items, (start > 0).then_some(start));
        };
        let mut items = Vec::with_capacity(limit);
        let mut at = end;
        while at > 0 && items.len() < limit {
            at -= 1;
            let e = &inner.order[at];
            if e.tenant.as_deref() == Some(tenant) {
                items.push(e.clone());
            }
        }
        let more = inner.order[..at]
            .iter()
            .any(|e| e.tenant.as_deref() == Some(tenant));
        (items, more.then_some(at))
    }
}

impl Executions {
    /// Opens (creating) `path` and loads the executions recorded in it.
    pub fn open(path: &Path) -> std::io::Result<Executions> {
        let mut map = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            // A torn last line (a crash mid-append) is skipped.
            for line in text.lines() {
                if let Ok(e) = serde_json::from_str::<Execution>(line)
                    && let Ok(run) = e.run.parse::<RunId>()
                {
                    map.insert(run, e);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Executions {
            file: Mutex::new(Some(file)),
            map: RwLock::new(map),
            timed_out: Mutex::default(),
        })
    }

    /// Records an execution (not synced: the run itself is durable in the engine's
    /// store; a machine crash may lose this line, and the status then shows no
    /// `workflow_id`).
    pub fn record(&self, run: RunId, e: Execution) {
        if let Ok(mut line) = serde_json::to_vec(&e) {
            line.push(b'\n');
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = file.as_mut()
                && let Err(err) = f.write_all(&line)
            {
                tracing::warn!(error = %err, "cannot record an execution");
            }
        }
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run, e);
    }

    /// An execution.
    pub fn get(&self, run: RunId) -> Option<Execution> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&run)
            .cloned()
    }

    /// Every execution with a deadline.
    pub fn with_deadlines(&self) -> Vec<(RunId, u64)> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(r, e)| Some((*r, e.deadline_ms?)))
            .collect()
    }

    /// Marks a run cancelled by its timeout.
    pub fn mark_timed_out(&self, run: RunId) {
        self.timed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run);
    }

    /// Whether a run was cancelled by its timeout.
    pub fn timed_out(&self, run: RunId) -> bool {
        self.timed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str) -> Vec<u8> {
        format!(
            r#"{{"name": "{name}", "agents": {{"a": {{"type": "noop"}}}}, "tasks": [{{"id": "t", "agent": "a"}}]}}"#
        )
        .into_bytes()
    }

    /// Only the most recently used workflows keep what they compile to; the
    /// others compile again from their file, the same as before.
    #[test]
    fn only_the_recently_used_stay_compiled_and_the_rest_come_back_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open_keeping(dir.path(), 2).unwrap();
        let entries: Vec<Arc<Entry>> = ["one", "two", "three"]
            .iter()
            .map(|n| {
                catalog
                    .create(body(n), Some(Format::Json), None, |_| Ok(()))
                    .unwrap()
            })
            .collect();
        let resident = |e: &Entry| e.compiled.lock().unwrap().is_some();
        assert!(!resident(&entries[0]), "the oldest let go");
        assert!(resident(&entries[1]) && resident(&entries[2]));
        let again = catalog.compiled(&entries[0]).unwrap();
        assert_eq!(again.checked.workflow.name.as_deref(), Some("one"));
        assert_eq!(again.plan.len(), 1);
        assert!(resident(&entries[0]) && !resident(&entries[1]));
        // A catalog opened again has them all, compiled or not.
        drop(catalog);
        let reopened = Catalog::open_keeping(dir.path(), 2).unwrap();
        let (all, _) = reopened.list(None, 10, None);
        assert_eq!(all.len(), 3);
        for e in &all {
            let c = reopened.compiled(e).unwrap();
            assert_eq!(c.checked.workflow.name, e.name);
        }
    }

    /// Each tenant has its own workflows: lists, names and versions, kept
    /// across a restart; a workflow that names another tenant is refused.
    #[test]
    fn tenants_list_find_and_number_their_own_workflows() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let post = |tenant: Option<&str>| {
            catalog
                .create(body("etl"), Some(Format::Json), tenant, |_| Ok(()))
                .unwrap()
        };
        let a1 = post(Some("acme"));
        let g1 = post(None);
        let a2 = post(Some("acme"));
        let b1 = post(Some("bolt"));
        assert_eq!(
            (a1.version, a2.version, b1.version, g1.version),
            (1, 2, 1, 1)
        );
        let named = catalog
            .create(
                br#"{"tenant": "bolt", "tasks": [{"id": "t"}]}"#.to_vec(),
                Some(Format::Json),
                Some("acme"),
                |_| Ok(()),
            )
            .err()
            .unwrap();
        assert!(named.to_string().contains("tenant `bolt`"), "{named}");
        drop(catalog);
        let catalog = Catalog::open(dir.path()).unwrap();
        let ids = |items: Vec<Arc<Entry>>| items.iter().map(|e| e.id).collect::<Vec<_>>();
        let (acme, next) = catalog.list(Some("acme"), 1, None);
        assert_eq!(ids(acme), [a2.id]);
        let (acme, next) = catalog.list(Some("acme"), 1, next);
        assert_eq!((ids(acme), next), (vec![a1.id], None));
        assert_eq!(ids(catalog.list(Some("bolt"), 10, None).0), [b1.id]);
        assert_eq!(catalog.list(None, 10, None).0.len(), 4, "across tenants");
        assert_eq!(catalog.find(Some("acme"), "etl", None).unwrap().id, a2.id);
        assert_eq!(catalog.find(None, "etl", None).unwrap().id, g1.id);
        assert!(catalog.find(Some("bolt"), "etl", Some(2)).is_none());
        let stored = catalog.compiled(&catalog.get(b1.id).unwrap()).unwrap();
        assert_eq!(stored.checked.workflow.tenant.as_deref(), Some("bolt"));
    }
}

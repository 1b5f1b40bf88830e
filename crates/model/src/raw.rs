//! The document as parsed, before validation.
//!
//! Tasks are read with hand-written visitors rather than `#[serde(flatten)]`
//! so that a million-task file is not buffered twice, and so that every
//! unknown key is recorded (validation reports them all, with suggestions)
//! instead of stopping at the first one.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::diag::{Path, Report};
use crate::workflow::Task;

/// Known task fields, in the order the docs list them.
pub(crate) const TASK_FIELDS: &[&str] = &[
    "id",
    "agent",
    "depends_on",
    "parallel",
    "requires",
    "estimate",
    "timeout",
    "retry",
    "compensation",
    "condition",
    "wait_for",
    "input",
    "for_each",
    "routes",
    "workflow",
    "loop",
    "pattern",
];

/// Known workflow fields.
pub(crate) const WORKFLOW_FIELDS: &[&str] = &[
    "name",
    "version",
    "orchestration_pattern",
    "agents",
    "tasks",
    "coordination",
    "tenant",
];

/// A parsed document: the workflow and whether it sat under a `workflow:` key.
#[derive(Debug, Default)]
pub(crate) struct Document {
    pub workflow: RawWorkflow,
    pub wrapped: bool,
    /// Keys found beside `workflow:` at the top level.
    pub unknown_top: Vec<String>,
    /// What task conversion found while the tasks streamed by.
    pub report: Report,
}

#[derive(Debug, Default)]
pub(crate) struct RawWorkflow {
    pub name: Option<Value>,
    pub version: Option<Value>,
    pub orchestration_pattern: Option<Value>,
    pub agents: Option<Value>,
    /// Tasks, checked one by one as they are read: a raw task never
    /// outlives its conversion, so a million-task file is not held twice.
    pub tasks: Option<Vec<Task>>,
    pub coordination: Option<Value>,
    pub tenant: Option<Value>,
    /// Unknown keys, in document order.
    pub unknown: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct RawTask {
    pub id: Option<String>,
    pub agent: Option<String>,
    pub depends_on: Vec<String>,
    pub parallel: Option<bool>,
    pub requires: Vec<String>,
    pub estimate: Option<Value>,
    pub timeout: Option<Value>,
    pub retry: Option<Value>,
    pub compensation: Option<Value>,
    pub condition: Option<Value>,
    pub wait_for: Option<Value>,
    pub input: Option<Value>,
    pub for_each: Option<Value>,
    pub routes: Option<Value>,
    pub workflow: Option<Value>,
    pub repeat: Option<Value>,
    pub pattern: Option<Value>,
    pub unknown: Vec<String>,
}

/// A string that may be written as a string or an integer (`id: 7`).
struct Name(String);

impl<'de> de::Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Name, E> {
                Ok(Name(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of names; a single name is accepted as a one-element list.
struct Names(Vec<String>);

impl<'de> de::Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of task ids")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(Name(n)) = seq.next_element()? {
                    out.push(n);
                }
                Ok(Names(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names(vec![v.to_owned()]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Names, E> {
                Ok(Names(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Names, E> {
                Ok(Names(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for RawTask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTask;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a task (a map with at least an `id`)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTask, A::Error> {
                let mut t = RawTask::default();
                while let Some(key) = map.next_key::<KeyName>()? {
                    match key.0.as_str() {
                        "id" => t.id = Some(map.next_value::<Name>()?.0),
                        "agent" => t.agent = map.next_value::<Option<Name>>()?.map(|n| n.0),
                        "depends_on" => t.depends_on = map.next_value::<Names>()?.0,
                        "parallel" => t.parallel = map.next_value()?,
                        "requires" => t.requires = map.next_value::<Names>()?.0,
                        "estimate" => t.estimate = map.next_value()?,
                        "timeout" => t.timeout = map.next_value()?,
                        "retry" => t.retry = map.next_value()?,
                        "compensation" => t.compensation = map.next_value()?,
                        "condition" => t.condition = map.next_value()?,
                        "wait_for" => t.wait_for = map.next_value()?,
                        "input" => t.input = map.next_value()?,
                        "for_each" => t.for_each = map.next_value()?,
                        "routes" => t.routes = map.next_value()?,
                        "workflow" => t.workflow = map.next_value()?,
                        "loop" => t.repeat = map.next_value()?,
                        "pattern" => t.pattern = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            t.unknown.push(key.0);
                        }
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}

/// A map key; non-string keys (`1: x` in YAML) become their text.
struct KeyName(String);

impl<'de> de::Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Name::deserialize(d).map(|n| KeyName(n.0))
    }
}

/// Reads the fields of a workflow object into `w`, starting from `first_key`
/// (already consumed by the caller).
fn workflow_fields<'de, A: MapAccess<'de>>(
    map: &mut A,
    mut key: Option<String>,
    w: &mut RawWorkflow,
    root: &Path,
    report: &mut Report,
    tasks_hint: usize,
    convert: ConvertTask,
) -> Result<(), A::Error> {
    while let Some(k) = key {
        match k.as_str() {
            "name" => w.name = map.next_value()?,
            "version" => w.version = map.next_value()?,
            "orchestration_pattern" => w.orchestration_pattern = map.next_value()?,
            "agents" => w.agents = map.next_value()?,
            "tasks" => {
                w.tasks = map.next_value_seed(TasksSeed {
                    convert,
                    path: root.key("tasks"),
                    report: &mut *report,
                    capacity: tasks_hint,
                })?
            }
            "coordination" => w.coordination = map.next_value()?,
            "tenant" => w.tenant = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
                w.unknown.push(k);
            }
        }
        key = map.next_key::<KeyName>()?.map(|k| k.0);
    }
    Ok(())
}

/// Turns a task as read into a task of the model (validation's `task`, passed
/// in so that parsing does not depend on validation, which reads its types).
pub(crate) type ConvertTask = fn(RawTask, &Path, usize, &mut Report) -> Task;

/// Reads the task list, converting each task as soon as it is read.
struct TasksSeed<'a> {
    convert: ConvertTask,
    path: Path,
    report: &'a mut Report,
    /// Room to reserve up front when the format gives no length.
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for TasksSeed<'_> {
    type Value = Option<Vec<Task>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TasksSeed<'_> {
    type Value = Option<Vec<Task>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of tasks")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tasks = Vec::with_capacity(seq.size_hint().unwrap_or(self.capacity));
        while let Some(raw) = seq.next_element::<RawTask>()? {
            let i = tasks.len();
            tasks.push((self.convert)(raw, &self.path, i, self.report));
        }
        Ok(Some(tasks))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct WorkflowSeed<'a> {
    convert: ConvertTask,
    workflow: &'a mut RawWorkflow,
    root: Path,
    report: &'a mut Report,
    tasks_hint: usize,
}

impl<'de> DeserializeSeed<'de> for WorkflowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WorkflowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a workflow (a map with `tasks`)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let first = map.next_key::<KeyName>()?.map(|k| k.0);
        workflow_fields(
            &mut map,
            first,
            self.workflow,
            &self.root,
            self.report,
            self.tasks_hint,
            self.convert,
        )
    }
}

/// Reads a whole document (the entry point of parsing).
pub(crate) struct DocumentSeed {
    /// How many tasks to make room for before the first is read. Growing a
    /// million-task list by doubling copies it (and faults in fresh pages)
    /// again and again; reserving once avoids that, and pages reserved but
    /// never written cost nothing.
    pub tasks_hint: usize,
    /// How each task is converted as soon as it is read.
    pub convert: ConvertTask,
}

impl DocumentSeed {
    /// A seed for a document of `len` bytes: a task takes at least ~40 bytes
    /// as people and generators write them; if there are more, the list
    /// grows as usual.
    pub(crate) fn for_len(len: usize, convert: ConvertTask) -> DocumentSeed {
        DocumentSeed {
            tasks_hint: len / 40,
            convert,
        }
    }
}

impl<'de> DeserializeSeed<'de> for DocumentSeed {
    type Value = Document;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Document, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed {
    type Value = Document;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a workflow document: a map with `tasks`, or `workflow:` holding one")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut doc = Document::default();
        let Some(first) = map.next_key::<KeyName>()?.map(|k| k.0) else {
            return Ok(doc);
        };
        if first == "workflow" {
            doc.wrapped = true;
            map.next_value_seed(WorkflowSeed {
                convert: self.convert,
                workflow: &mut doc.workflow,
                root: Path::root().key("workflow"),
                report: &mut doc.report,
                tasks_hint: self.tasks_hint,
            })?;
            // Anything beside `workflow:` is unknown at the top level.
            while let Some(k) = map.next_key::<KeyName>()? {
                map.next_value::<IgnoredAny>()?;
                doc.unknown_top.push(k.0);
            }
        } else {
            workflow_fields(
                &mut map,
                Some(first),
                &mut doc.workflow,
                &Path::root(),
                &mut doc.report,
                self.tasks_hint,
                self.convert,
            )?;
        }
        Ok(doc)
    }
}

//! Scenarios: which tasks a simulated user picks, with which weights, and
//! the workload's parameters (workflow shape and size, event batch sizes).
//!
//! Built in: `orchestration`, `high-throughput`, `mixed`, `health`; any other
//! name is read as a TOML file:
//!
//! ```toml
//! name = "ingest-heavy"          # optional; the file name otherwise
//! [weights]                      # task = weight (0 or absent: never)
//! create = 1
//! execute = 1
//! status = 2
//! list = 1
//! publish = 5
//! [workflow]
//! tasks = 50                     # tasks per generated workflow
//! shape = "layered"              # chain | fanout | layered | random | diamond | dense
//! [events]
//! batch = "1000..5000"           # or a number
//! payload_bytes = 100
//! topic = "load"
//! ```

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use baton_model::Rng;
use baton_model::generate::Shape;
use serde::Deserialize;

/// Something a user does in one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskKind {
    /// `POST /api/v1/workflows` with a generated workflow.
    Create,
    /// `POST /api/v1/workflows/{id}/execute` of one of the user's workflows,
    /// then `GET /api/v1/executions/{id}` every poll interval until it ends.
    Execute,
    /// `GET /api/v1/executions/{id}` of the user's last execution (with none
    /// yet: `execute` first).
    Status,
    /// `GET /api/v1/workflows?limit=20`.
    List,
    /// `POST /api/v1/events` with a batch of events.
    Publish,
    /// `GET /healthz` (a trivial endpoint: what the generator itself sustains).
    Health,
}

impl TaskKind {
    /// Every task, in report order.
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Create,
        TaskKind::Execute,
        TaskKind::Status,
        TaskKind::List,
        TaskKind::Publish,
        TaskKind::Health,
    ];

    /// The name used in `--weights` and scenario files.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Create => "create",
            TaskKind::Execute => "execute",
            TaskKind::Status => "status",
            TaskKind::List => "list",
            TaskKind::Publish => "publish",
            TaskKind::Health => "health",
        }
    }
}

impl FromStr for TaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<TaskKind, String> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown task `{s}`: expected create, execute, status, list, publish or health"
                )
            })
    }
}

/// Events per publish: a fixed number or a uniform range (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Smallest batch.
    pub min: usize,
    /// Largest batch.
    pub max: usize,
}

impl FromStr for Batch {
    type Err = String;
    fn from_str(s: &str) -> Result<Batch, String> {
        let num = |t: &str| {
            t.trim()
                .replace('_', "")
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: expected a batch size like 1000 or 1000..10000"))
        };
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (num(a)?, num(b.trim_start_matches('='))?),
            None => (num(s)?, num(s)?),
        };
        if min == 0 || min > max {
            return Err(format!(
                "`{s}`: a batch is 1 or more events, and the range's start is not above its end"
            ));
        }
        Ok(Batch { min, max })
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// A scenario: task weights and workload parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name (`orchestration`, or the file's).
    pub name: String,
    /// Weight of each task; tasks with weight 0 are never picked.
    pub weights: Vec<(TaskKind, u32)>,
    /// Tasks per generated workflow.
    pub tasks: usize,
    /// Shape of generated workflows.
    pub shape: Shape,
    /// Events per publish.
    pub batch: Batch,
    /// Bytes of each event's payload (a JSON string).
    pub payload_bytes: usize,
    /// The topic events are published to.
    pub topic: String,
}

impl Scenario {
    fn with(name: &str, weights: &[(TaskKind, u32)]) -> Scenario {
        Scenario {
            name: name.into(),
            weights: weights.to_vec(),
            tasks: 20,
            shape: Shape::Random,
            batch: Batch {
                min: 1000,
                max: 1000,
            },
            payload_bytes: 100,
            topic: "load".into(),
        }
    }

    /// The seed's OrchestrationUser: create 3, execute 2, status 5, list 1.
    pub fn orchestration() -> Scenario {
        use TaskKind::*;
        Scenario::with(
            "orchestration",
            &[(Create, 3), (Execute, 2), (Status, 5), (List, 1)],
        )
    }

    /// The seed's HighThroughputUser: publish batches.
    pub fn high_throughput() -> Scenario {
        Scenario::with("high-throughput", &[(TaskKind::Publish, 1)])
    }

    /// Both users' tasks in one: orchestration's weights plus publish 2.
    pub fn mixed() -> Scenario {
        use TaskKind::*;
        Scenario::with(
            "mixed",
            &[
                (Create, 3),
                (Execute, 2),
                (Status, 5),
                (List, 1),
                (Publish, 2),
            ],
        )
    }

    /// `GET /healthz` only: measures the generator against a trivial endpoint.
    pub fn health() -> Scenario {
        Scenario::with("health", &[(TaskKind::Health, 1)])
    }

    /// A built-in scenario by name, or a TOML file.
    pub fn load(name: &str) -> Result<Scenario, String> {
        match name {
            "orchestration" => Ok(Scenario::orchestration()),
            "high-throughput" => Ok(Scenario::high_throughput()),
            "mixed" => Ok(Scenario::mixed()),
            "health" => Ok(Scenario::health()),
            path => {
                let p = Path::new(path);
                if !p.exists() {
                    return Err(format!(
                        "unknown scenario `{path}`: expected orchestration, high-throughput, mixed, health or a TOML file"
                    ));
                }
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read scenario file {path}: {e}"))?;
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or(path);
                Scenario::from_toml(&text, stem).map_err(|e| format!("{path}: {e}"))
            }
        }
    }

    /// Parses a scenario file (see the module docs).
    pub fn from_toml(text: &str, default_name: &str) -> Result<Scenario, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            name: Option<String>,
            weights: std::collections::BTreeMap<String, u32>,
            #[serde(default)]
            workflow: Option<WorkflowPart>,
            #[serde(default)]
            events: Option<EventsPart>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct WorkflowPart {
            tasks: Option<usize>,
            shape: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct EventsPart {
            batch: Option<toml::Value>,
            payload_bytes: Option<usize>,
            topic: Option<String>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut s = Scenario::with(file.name.as_deref().unwrap_or(default_name), &[]);
        for (task, weight) in &file.weights {
            s.weights.push((task.parse()?, *weight));
        }
        s.weights.sort();
        if let Some(w) = file.workflow {
            if let Some(t) = w.tasks {
                s.tasks = t;
            }
            if let Some(shape) = w.shape {
                s.shape = shape.parse()?;
            }
        }
        if let Some(e) = file.events {
            if let Some(b) = e.batch {
                s.batch = match b {
                    toml::Value::Integer(n) => n.to_string().parse()?,
                    toml::Value::String(s) => s.parse()?,
                    other => {
                        return Err(format!(
                            "events.batch: expected 1000 or \"1000..10000\", found {other:?}"
                        ));
                    }
                };
            }
            if let Some(p) = e.payload_bytes {
                s.payload_bytes = p;
            }
            if let Some(t) = e.topic {
                s.topic = t;
            }
        }
        s.check()?;
        Ok(s)
    }

    /// Applies `--weights create=3,execute=2`: the named tasks get new weights
    /// (0 removes one), the others keep theirs.
    pub fn set_weights(&mut self, spec: &str) -> Result<(), String> {
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (task, weight) = part.split_once('=').ok_or_else(|| {
                format!("--weights: `{part}` is not TASK=WEIGHT (e.g. create=3,execute=2)")
            })?;
            let task: TaskKind = task.trim().parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("--weights: `{weight}` is not a whole number"))?;
            match self.weights.iter_mut().find(|(k, _)| *k == task) {
                Some(slot) => slot.1 = weight,
                None => self.weights.push((task, weight)),
            }
        }
        self.weights.sort();
        self.check()
    }

    /// Every scenario needs some task to pick and sane parameters.
    pub fn check(&self) -> Result<(), String> {
        if self.weights.iter().all(|(_, w)| *w == 0) {
            return Err("the scenario has no task with a weight above 0".into());
        }
        if self.tasks == 0 {
            return Err("workflows need at least 1 task".into());
        }
        Ok(())
    }

    /// The weights as a picker.
    pub fn picker(&self) -> Picker {
        Picker::new(&self.weights)
    }
}

/// Weighted random choice (Locust's `@task(weight)`): cumulative weights and
/// a binary search.
#[derive(Debug, Clone)]
pub struct Picker {
    kinds: Vec<TaskKind>,
    cumulative: Vec<u64>,
}

impl Picker {
    /// A picker over the tasks with a weight above 0.
    pub fn new(weights: &[(TaskKind, u32)]) -> Picker {
        let mut kinds = Vec::new();
        let mut cumulative = Vec::new();
        let mut sum = 0u64;
        for &(k, w) in weights.iter().filter(|(_, w)| *w > 0) {
            sum += u64::from(w);
            kinds.push(k);
            cumulative.push(sum);
        }
        assert!(sum > 0, "a picker needs a positive weight");
        Picker { kinds, cumulative }
    }

    /// A task, each with probability weight / total.
    pub fn pick(&self, rng: &mut Rng) -> TaskKind {
        let total = *self.cumulative.last().expect("non-empty");
        let r = rng.below(total);
        let i = self.cumulative.partition_point(|&c| c <= r);
        self.kinds[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice_follows_the_weights() {
        let s = Scenario::orchestration();
        let p = s.picker();
        let mut rng = Rng(7);
        let mut counts = std::collections::BTreeMap::new();
        let n = 110_000;
        for _ in 0..n {
            *counts.entry(p.pick(&mut rng)).or_insert(0u32) += 1;
        }
        // create 3, execute 2, status 5, list 1 out of 11.
        for (kind, w) in [
            (TaskKind::Create, 3.0),
            (TaskKind::Execute, 2.0),
            (TaskKind::Status, 5.0),
            (TaskKind::List, 1.0),
        ] {
            let share = f64::from(counts[&kind]) / n as f64;
            assert!((share - w / 11.0).abs() < 0.01, "{kind:?}: {share}");
        }
        assert_eq!(counts.len(), 4);
    }

    #[test]
    fn zero_weights_are_never_picked() {
        let p = Picker::new(&[(TaskKind::Create, 0), (TaskKind::List, 1)]);
        let mut rng = Rng(1);
        assert!((0..1000).all(|_| p.pick(&mut rng) == TaskKind::List));
    }

    #[test]
    fn weights_flag() {
        let mut s = Scenario::orchestration();
        s.set_weights("create=1, list=0,publish=4").unwrap();
        assert_eq!(
            s.weights,
            vec![
                (TaskKind::Create, 1),
                (TaskKind::Execute, 2),
                (TaskKind::Status, 5),
                (TaskKind::List, 0),
                (TaskKind::Publish, 4)
            ]
        );
        assert!(
            s.set_weights("creat=1")
                .unwrap_err()
                .contains("unknown task")
        );
        let mut h = Scenario::high_throughput();
        assert!(h.set_weights("publish=0").is_err());
    }

    #[test]
    fn batches() {
        assert_eq!(
            "1000".parse::<Batch>().unwrap(),
            Batch {
                min: 1000,
                max: 1000
            }
        );
        assert_eq!(
            "1_000..10_000".parse::<Batch>().unwrap(),
            Batch {
                min: 1000,
                max: 10000
            }
        );
        assert!("0".parse::<Batch>().is_err());
        assert!("10..1".parse::<Batch>().is_err());
        assert!("x".parse::<Batch>().is_err());
    }

    #[test]
    fn scenario_file() {
        let s = Scenario::from_toml(
            "name = \"x\"\n[weights]\npublish = 5\nstatus = 1\n[workflow]\ntasks = 7\nshape = \"chain\"\n[events]\nbatch = \"10..20\"\n",
            "file",
        )
        .unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(
            s.weights,
            vec![(TaskKind::Status, 1), (TaskKind::Publish, 5)]
        );
        assert_eq!((s.tasks, s.shape), (7, Shape::Chain));
        assert_eq!(s.batch, Batch { min: 10, max: 20 });
        let e = Scenario::from_toml("[weights]\nfoo = 1\n", "f").unwrap_err();
        assert!(e.contains("unknown task `foo`"), "{e}");
        assert!(Scenario::from_toml("[weights]\n", "f").is_err());
    }
}

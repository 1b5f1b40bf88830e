//! `baton run --follow`: what the runs' calls report while they run, one
//! line each on stderr: progress and partial output (`baton.progress`),
//! questions for a person (`baton.input_required`) and decisions
//! (`baton.decision`), read from the engine's topic as they are published.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use baton_engine::store::RunId;
use baton_events::EventLog;
use serde_json::Value;
use tokio::sync::oneshot;

/// Records read per partition and step.
const BATCH: usize = 512;
/// The pause when every partition is caught up.
const IDLE: Duration = Duration::from_millis(50);

/// How long, once the runs ended, their last events may take to reach the
/// log (they are published off the engine's loop).
const GRACE: Duration = Duration::from_secs(3);

/// Follows `runs` on `topic` until `stop` fires, then prints what is left:
/// up to each run's final `baton.run` event.
pub async fn follow<L: EventLog>(
    log: Arc<L>,
    topic: String,
    runs: &[RunId],
    since_ms: u64,
    mut stop: oneshot::Receiver<()>,
) {
    let mut f = Follower {
        keys: runs.iter().map(|r| r.to_string()).collect(),
        ended: HashSet::new(),
        from: Vec::new(),
        texts: HashMap::new(),
        terminal: std::io::stderr().is_terminal(),
    };
    loop {
        if f.step(&*log, &topic, since_ms).await == 0 {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = &mut stop => break,
            }
        }
    }
    let deadline = tokio::time::Instant::now() + GRACE;
    while f.ended.len() < f.keys.len() && tokio::time::Instant::now() < deadline {
        if f.step(&*log, &topic, since_ms).await == 0 {
            tokio::time::sleep(IDLE).await;
        }
    }
}

struct Follower {
    keys: HashSet<String>,
    /// The runs whose final `baton.run` event was read.
    ended: HashSet<String>,
    /// The next offset to read, per partition (empty until the topic exists).
    from: Vec<u64>,
    /// The text a call last reported (run, task, instance, attempt), so that
    /// a text reported again with more at its end prints only what is new.
    texts: HashMap<(String, String, Option<u64>, u64), String>,
    terminal: bool,
}

impl Follower {
    /// Reads and prints what was published since the last step; returns how
    /// many records were read.
    async fn step<L: EventLog>(&mut self, log: &L, topic: &str, since_ms: u64) -> usize {
        if self.from.is_empty() {
            let Ok(offsets) = log.offsets_at(topic, since_ms).await else {
                return 0;
            };
            self.from = vec![0; offsets.len()];
            for o in offsets {
                if let Some(f) = self.from.get_mut(o.partition as usize) {
                    *f = o.offset;
                }
            }
        }
        let mut read = 0;
        for partition in 0..self.from.len() {
            let Ok(records) = log
                .read(topic, partition as u32, self.from[partition], BATCH)
                .await
            else {
                continue;
            };
            read += records.len();
            for r in records {
                self.from[partition] = r.offset.offset + 1;
                let key = String::from_utf8_lossy(&r.event.key);
                if !self.keys.contains(key.as_ref()) {
                    continue;
                }
                let Ok(payload) = serde_json::from_slice::<Value>(&r.event.payload) else {
                    continue;
                };
                if &*r.event.kind == "baton.run"
                    && matches!(
                        payload.get("status").and_then(Value::as_str),
                        Some("completed" | "failed" | "cancelled")
                    )
                {
                    self.ended.insert(key.into_owned());
                    continue;
                }
                if let Some(line) = self.line(&r.event.kind, &payload) {
                    if self.terminal {
                        // Over the progress line, which is drawn again.
                        eprint!("\r\x1b[2K");
                    }
                    eprintln!("{line}");
                }
            }
        }
        read
    }

    /// The line an event prints, if it prints one.
    fn line(&mut self, kind: &str, p: &Value) -> Option<String> {
        let task = p.get("task").and_then(Value::as_str).unwrap_or("?");
        let instance = p.get("instance").and_then(Value::as_u64);
        let who = match instance {
            Some(i) => format!("{task}[{i}]"),
            None => task.to_owned(),
        };
        match kind {
            "baton.progress" => {
                let progress = p.get("progress")?;
                let Some(text) = progress.get("text").and_then(Value::as_str) else {
                    return Some(format!("{who} · {}", compact(progress)));
                };
                let call = (
                    p.get("run")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    task.to_owned(),
                    instance,
                    p.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                );
                let before = self.texts.insert(call, text.to_owned()).unwrap_or_default();
                let new = text.strip_prefix(before.as_str()).unwrap_or(text);
                let new = new.trim_start();
                (!new.is_empty()).then(|| format!("{who} · {}", new.replace('\n', " ")))
            }
            "baton.input_required" => {
                let answer = p.get("answer")?;
                Some(format!(
                    "{who} asks: {}\n  answer with a `{}` event, key `{}`, on `{}`",
                    compact(p.get("question")?),
                    answer.get("type").and_then(Value::as_str).unwrap_or(""),
                    answer.get("key").and_then(Value::as_str).unwrap_or(""),
                    answer.get("topic").and_then(Value::as_str).unwrap_or(""),
                ))
            }
            "baton.decision" => {
                let mut rest = p.as_object()?.clone();
                rest.remove("run");
                rest.remove("task");
                let decision = rest.remove("decision")?;
                Some(format!(
                    "{who} · {} {}",
                    compact(&decision),
                    compact(&Value::Object(rest))
                ))
            }
            _ => None,
        }
    }
}

/// A value on one line: a string as it is, anything else as JSON.
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.replace('\n', " "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn follower() -> Follower {
        Follower {
            keys: HashSet::new(),
            ended: HashSet::new(),
            from: Vec::new(),
            texts: HashMap::new(),
            terminal: false,
        }
    }

    #[test]
    fn a_growing_text_prints_only_what_is_new() {
        let mut f = follower();
        let at = |text: &str| json!({"run": "r", "task": "answer", "attempt": 1, "progress": {"text": text}});
        assert_eq!(
            f.line("baton.progress", &at("Thinking")).as_deref(),
            Some("answer · Thinking")
        );
        assert_eq!(
            f.line("baton.progress", &at("Thinking it over")).as_deref(),
            Some("answer · it over")
        );
        assert_eq!(f.line("baton.progress", &at("Thinking it over")), None);
        // A text that is not a continuation prints whole.
        assert_eq!(
            f.line("baton.progress", &at("Rewritten")).as_deref(),
            Some("answer · Rewritten")
        );
    }

    #[test]
    fn questions_say_how_to_answer_and_other_progress_is_json() {
        let mut f = follower();
        let asked = json!({"run": "r", "task": "refund", "attempt": 1, "question": "Approve?",
            "answer": {"topic": "baton.signals", "type": "baton.input", "key": "r/refund"}});
        assert_eq!(
            f.line("baton.input_required", &asked).as_deref(),
            Some(
                "refund asks: Approve?\n  answer with a `baton.input` event, key `r/refund`, on `baton.signals`"
            )
        );
        let pct =
            json!({"run": "r", "task": "t", "instance": 2, "attempt": 1, "progress": {"pct": 40}});
        assert_eq!(
            f.line("baton.progress", &pct).as_deref(),
            Some(r#"t[2] · {"pct":40}"#)
        );
        assert_eq!(f.line("baton.transitions", &pct), None);
    }
}

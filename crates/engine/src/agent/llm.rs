//! The `llm` agent: one call of an OpenAI-compatible chat-completions API
//! (`POST {base_url}/chat/completions`), which OpenAI, Azure OpenAI, vLLM,
//! Ollama, llama.cpp's server and LiteLLM all speak.
//!
//! The model is given the agent's `system` prompt and, as the user message,
//! the call's input as JSON (the task's input, its upstream outputs, and what
//! a pattern adds: the conversation, the message, the blackboard). What the
//! call may decide ([`Decisions`]: a handoff, a delegation, messages, a route,
//! blackboard writes, finishing) is offered as tools, and the tools it calls
//! become the decision protocol's output (`{"handoff": …}`, `{"delegate": …}`,
//! …). Without a tool call, the answer's text is the output: parsed as JSON
//! when it is JSON, else a string.
//!
//! With `stream: true` the answer is asked for as a stream of chunks: the
//! text so far is reported as progress while it arrives (`{"text": …}`),
//! and the whole answer is then taken as a non-streamed one would be.
//!
//! The API key is read from the environment variable `api_key_env` names when
//! the agent is built, and sent as a bearer token; it is never part of a
//! workflow, a record or an event. Answers are judged like the `http`
//! agent's: 429, 408 and 5xx are retryable (the task's `retry` policy spaces
//! the attempts), other failures permanent. The same egress policy applies.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::endpoint::{Egress, Endpoint, Streamed, excerpt, json_answer, status_failure};
use super::{Call, Decisions, Failure, Outcome, Runner, Started};

/// An agent answering through a chat-completions API.
#[derive(Debug, Clone)]
pub struct Llm {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    model: String,
    system: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    stream: bool,
}

impl Llm {
    /// The agent `agent` declares (`base_url`, `model`, and optionally
    /// `system`, `temperature`, `max_tokens`, `api_key_env`).
    pub fn new(agent: &baton_model::Agent, egress: &Egress) -> Result<Llm, String> {
        let base = agent
            .base_url
            .as_deref()
            .ok_or("type `llm` needs `base_url`")?;
        let model = agent.model.clone().ok_or("type `llm` needs `model`")?;
        let mut headers = Vec::new();
        if let Some(var) = &agent.api_key_env {
            let key = std::env::var(var).map_err(|_| {
                format!(
                    "`api_key_env` names `{var}`, which is not set in the environment of the process that runs the agent"
                )
            })?;
            headers.push(("authorization".to_string(), format!("Bearer {key}")));
        }
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        Ok(Llm {
            inner: Arc::new(Inner {
                endpoint: Endpoint::new(&url, &headers, egress)?,
                model,
                system: agent.system.clone(),
                temperature: agent.temperature,
                max_tokens: agent.max_tokens,
                stream: agent.stream,
            }),
        })
    }
}

impl Runner for Llm {
    fn offers_decisions(&self) -> bool {
        true
    }

    /// The tokens each answer used (counted per run).
    fn reports_progress(&self) -> bool {
        true
    }

    fn start(&self, call: Call) -> Started {
        Started::Later(Box::pin(ask(Arc::clone(&self.inner), call)))
    }
}

/// One chat completion for a call, and its answer made into an output.
async fn ask(inner: Arc<Inner>, call: Call) -> Outcome {
    let decisions = call.decisions.clone().unwrap_or_default();
    let body = serde_json::to_vec(&request_body(&inner, &call, &decisions))
        .map_err(|e| Failure::permanent(format!("cannot encode the request as JSON: {e}")))?;
    let url = inner.endpoint.url();
    let answer = if inner.stream {
        let mut streamed = Stream::default();
        match inner
            .endpoint
            .post_stream(body, |data| {
                streamed.chunk(url, data, call.progress.as_ref())
            })
            .await?
        {
            Streamed::Events => streamed.answer(),
            Streamed::Body(body) => json_answer(url, &body)?,
        }
    } else {
        let (status, headers, body) = inner.endpoint.post(body).await?;
        if !status.is_success() {
            return Err(status_failure(url, status, &headers, &body));
        }
        json_answer(url, &body)?
    };
    if let Some(usage) = answer.get("usage") {
        let tokens = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
        let (prompt, completion) = (tokens("prompt_tokens"), tokens("completion_tokens"));
        if let Some(p) = &call.progress {
            p.tokens(prompt.unwrap_or(0), completion.unwrap_or(0));
        }
        tracing::info!(
            run = %call.run,
            task = %call.task,
            model = %inner.model,
            prompt_tokens = prompt,
            completion_tokens = completion,
            "llm agent answered"
        );
    }
    let Some(message) = answer.pointer("/choices/0/message") else {
        return Err(Failure::permanent(format!(
            "{url} answered without `choices[0].message`: {}",
            excerpt(answer.to_string().as_bytes())
        )));
    };
    output(message, &decisions)
}

/// A streamed answer (`stream: true`) put together from its chunks: the
/// text and the tool calls, whose arguments arrive in pieces, and the usage
/// of the last chunk.
#[derive(Default)]
struct Stream {
    text: String,
    /// Tool calls by their `index`: the name and the arguments so far.
    calls: Vec<(String, String)>,
    usage: Option<Value>,
    chunks: usize,
}

impl Stream {
    /// One `data:` of the stream. The text so far is reported as progress
    /// (`{"text": …}`), so that the newest report, which is what coalescing
    /// keeps, always has all of it.
    fn chunk(
        &mut self,
        url: &http::Uri,
        data: &str,
        progress: Option<&super::Progress>,
    ) -> Result<(), Failure> {
        if data.trim() == "[DONE]" {
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            Failure::permanent(format!(
                "{url} streamed a chunk that is not JSON ({e}): {}",
                excerpt(data.as_bytes())
            ))
        })?;
        if let Some(error) = chunk.get("error") {
            return Err(Failure::permanent(format!(
                "{url} streamed an error: {}",
                excerpt(error.to_string().as_bytes())
            )));
        }
        self.chunks += 1;
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(delta) = chunk.pointer("/choices/0/delta") else {
            return Ok(());
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            self.text.push_str(text);
            if let Some(p) = progress {
                p.report(json!({"text": self.text}));
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if index >= 64 {
                return Err(Failure::permanent(format!(
                    "{url} streamed a tool call at index {index}: more than 64 in one answer"
                )));
            }
            if self.calls.len() <= index {
                self.calls.resize_with(index + 1, Default::default);
            }
            let (name, arguments) = &mut self.calls[index];
            if let Some(n) = call.pointer("/function/name").and_then(Value::as_str) {
                name.push_str(n);
            }
            if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                arguments.push_str(a);
            }
        }
        Ok(())
    }

    /// The answer as a non-streamed one would have been.
    fn answer(self) -> Value {
        let mut message = json!({"role": "assistant", "content": self.text});
        if !self.calls.is_empty() {
            let calls: Vec<Value> = self
                .calls
                .into_iter()
                .map(|(name, arguments)| {
                    json!({"type": "function", "function": {"name": name, "arguments": arguments}})
                })
                .collect();
            message["tool_calls"] = Value::Array(calls);
        }
        let mut answer = json!({"choices": [{"message": message}]});
        if self.chunks == 0 {
            answer = json!({});
        }
        if let Some(usage) = self.usage {
            answer["usage"] = usage;
        }
        answer
    }
}

/// The chat-completions request of a call.
fn request_body(inner: &Inner, call: &Call, decisions: &Decisions) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &inner.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": call.input.to_string()}));
    let mut body = json!({"model": inner.model, "messages": messages});
    if let Some(t) = inner.temperature {
        body["temperature"] = t.into();
    }
    if let Some(n) = inner.max_tokens {
        body["max_tokens"] = n.into();
    }
    if inner.stream {
        body["stream"] = true.into();
        body["stream_options"] = json!({"include_usage": true});
    }
    let tools = tools(decisions);
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = "auto".into();
    }
    body
}

/// A function tool in the chat-completions format.
fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        }
    })
}

/// The decisions a call may make, as tools.
fn tools(d: &Decisions) -> Vec<Value> {
    let mut tools = Vec::new();
    if !d.handoff.is_empty() {
        let many = if d.handoff_many {
            " Call it several times to hand control to several agents at once."
        } else {
            ""
        };
        tools.push(tool(
            "handoff",
            &format!("Hand control to another agent, with what it needs to go on.{many}"),
            json!({
                "to": {"type": "string", "enum": d.handoff},
                "input": {"description": "what the agent is given"},
            }),
            &["to"],
        ));
    }
    if !d.delegate.is_empty() {
        tools.push(tool(
            "delegate",
            "Call workers (or teams) next, side by side, each with its input; you take the next turn with their answers.",
            json!({"calls": {"type": "array", "items": {"type": "object", "properties": {
                "agent": {"type": "string", "enum": d.delegate},
                "input": {"description": "what the worker is given"},
            }, "required": ["agent"]}}}),
            &["calls"],
        ));
    }
    if !d.send.is_empty() {
        tools.push(tool(
            "send",
            "Send messages to other agents of the network; each answers in the next round.",
            json!({"messages": {"type": "array", "items": {"type": "object", "properties": {
                "to": {"type": "string", "enum": d.send},
                "message": {"description": "what the agent is sent"},
            }, "required": ["to"]}}}),
            &["messages"],
        ));
    }
    if d.context {
        tools.push(tool(
            "write_context",
            "Write keys of the shared blackboard; with `expect`, only if each named key is still at the version given (0: never written).",
            json!({
                "set": {"type": "object", "description": "keys and their new values"},
                "expect": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            }),
            &["set"],
        ));
    }
    if !d.routes.is_empty() {
        tools.push(tool(
            "route",
            "Choose the route the work takes next.",
            json!({"route": {"type": "string", "enum": d.routes}}),
            &["route"],
        ));
    }
    let pattern = !(d.handoff.is_empty() && d.delegate.is_empty() && d.send.is_empty());
    if pattern {
        tools.push(tool(
            "finish",
            "Finish with the final result.",
            json!({"result": {"description": "the result"}}),
            &["result"],
        ));
    }
    tools
}

/// The output of an answer: its tool calls as decisions, else its text
/// (JSON when it parses).
fn output(message: &Value, d: &Decisions) -> Outcome {
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let Some(calls) = calls else {
        let text = message.get("content").and_then(Value::as_str).unwrap_or("");
        return Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())));
    };
    let mut out = Map::new();
    let mut handoffs = Vec::new();
    let mut delegate = Vec::new();
    let mut send = Vec::new();
    let mut context = Map::new();
    for call in calls {
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let Some(name) = name else {
            return Err(Failure::permanent(format!(
                "the model called a tool without a name: {call}"
            )));
        };
        let args: Value = serde_json::from_str(arguments).map_err(|e| {
            Failure::permanent(format!(
                "the model called `{name}` with arguments that are not JSON ({e}): {arguments}"
            ))
        })?;
        let field = |key: &str| args.get(key).cloned().unwrap_or(Value::Null);
        match name {
            "handoff" if !d.handoff.is_empty() => {
                let mut h = json!({"to": field("to")});
                if let Some(input) = args.get("input") {
                    h["input"] = input.clone();
                }
                handoffs.push(h);
            }
            "delegate" if !d.delegate.is_empty() => {
                delegate.extend(field("calls").as_array().cloned().unwrap_or_default())
            }
            "send" if !d.send.is_empty() => {
                send.extend(field("messages").as_array().cloned().unwrap_or_default())
            }
            "write_context" if d.context => {
                for key in ["set", "expect"] {
                    if let Some(map) = args.get(key).and_then(Value::as_object) {
                        let into = context
                            .entry(key)
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Some(into) = into.as_object_mut() {
                            into.extend(map.clone());
                        }
                    }
                }
            }
            "route" if !d.routes.is_empty() => {
                out.insert("route".into(), field("route"));
            }
            "finish" => {
                out.insert("finish".into(), field("result"));
            }
            other => {
                return Err(Failure::permanent(format!(
                    "the model called `{other}`, a tool it was not offered"
                )));
            }
        }
    }
    match (handoffs.len(), d.handoff_many) {
        (0, _) => {}
        (1, false) => {
            out.insert("handoff".into(), handoffs.remove(0));
        }
        (_, true) => {
            out.insert("handoff".into(), Value::Array(handoffs));
        }
        (n, false) => {
            return Err(Failure::permanent(format!(
                "the model handed control to {n} agents at once; one at a time here"
            )));
        }
    }
    if !delegate.is_empty() {
        out.insert("delegate".into(), Value::Array(delegate));
    }
    if !send.is_empty() {
        out.insert("send".into(), Value::Array(send));
    }
    if !context.is_empty() {
        out.insert("context".into(), Value::Object(context));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_call(name: &str, arguments: Value) -> Value {
        json!({"type": "function", "function": {"name": name, "arguments": arguments.to_string()}})
    }

    fn answered(calls: Vec<Value>, d: &Decisions) -> Outcome {
        output(
            &json!({"role": "assistant", "content": null, "tool_calls": calls}),
            d,
        )
    }

    #[test]
    fn tools_are_the_decisions_of_the_turn() {
        let names = |d: &Decisions| -> Vec<String> {
            tools(d)
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(
            names(&Decisions::default()).is_empty(),
            "a plain task answers"
        );
        let supervisor = Decisions {
            delegate: vec!["researcher".into()],
            ..Default::default()
        };
        assert_eq!(names(&supervisor), ["delegate", "finish"]);
        let swarm = Decisions {
            handoff: vec!["a".into(), "b".into()],
            handoff_many: true,
            context: true,
            ..Default::default()
        };
        assert_eq!(names(&swarm), ["handoff", "write_context", "finish"]);
        let routes = Decisions {
            routes: vec!["approve".into(), "revise".into()],
            ..Default::default()
        };
        assert_eq!(names(&routes), ["route"]);
        let t = &tools(&swarm)[0]["function"]["parameters"]["properties"]["to"]["enum"];
        assert_eq!(t, &json!(["a", "b"]));
    }

    #[test]
    fn tool_calls_become_the_decision_protocol() {
        let handoff = Decisions {
            handoff: vec!["billing".into()],
            ..Default::default()
        };
        let out = answered(
            vec![tool_call(
                "handoff",
                json!({"to": "billing", "input": {"order": 7}}),
            )],
            &handoff,
        );
        assert_eq!(
            out,
            Ok(json!({"handoff": {"to": "billing", "input": {"order": 7}}}))
        );
        let out = answered(
            vec![tool_call("finish", json!({"result": "done"}))],
            &handoff,
        );
        assert_eq!(out, Ok(json!({"finish": "done"})));

        let supervisor = Decisions {
            delegate: vec!["r".into()],
            ..Default::default()
        };
        let out = answered(
            vec![
                tool_call("delegate", json!({"calls": [{"agent": "r", "input": 1}]})),
                tool_call("delegate", json!({"calls": [{"agent": "r", "input": 2}]})),
            ],
            &supervisor,
        );
        assert_eq!(
            out,
            Ok(json!({"delegate": [{"agent": "r", "input": 1}, {"agent": "r", "input": 2}]}))
        );

        let swarm = Decisions {
            handoff: vec!["a".into(), "b".into()],
            handoff_many: true,
            context: true,
            ..Default::default()
        };
        let out = answered(
            vec![
                tool_call(
                    "write_context",
                    json!({"set": {"k": 1}, "expect": {"k": 0}}),
                ),
                tool_call("handoff", json!({"to": "a"})),
                tool_call("handoff", json!({"to": "b"})),
            ],
            &swarm,
        );
        assert_eq!(
            out,
            Ok(json!({"handoff": [{"to": "a"}, {"to": "b"}],
                      "context": {"set": {"k": 1}, "expect": {"k": 0}}}))
        );
    }

    #[test]
    fn an_answer_without_tools_is_its_text_and_bad_calls_fail_clearly() {
        let d = Decisions::default();
        let text = |content: &str| output(&json!({"content": content}), &d);
        assert_eq!(text("{\"ok\": true}"), Ok(json!({"ok": true})));
        assert_eq!(text("plain words"), Ok(json!("plain words")));
        let e = answered(vec![tool_call("handoff", json!({"to": "x"}))], &d).unwrap_err();
        assert!(e.message.contains("a tool it was not offered"), "{e:?}");
        assert!(!e.retryable);
        let bad = json!({"type": "function", "function": {"name": "finish", "arguments": "{oops"}});
        let e = answered(vec![bad], &d).unwrap_err();
        assert!(e.message.contains("arguments that are not JSON"), "{e:?}");
        let one = Decisions {
            handoff: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let e = answered(
            vec![
                tool_call("handoff", json!({"to": "a"})),
                tool_call("handoff", json!({"to": "b"})),
            ],
            &one,
        )
        .unwrap_err();
        assert!(e.message.contains("one at a time"), "{e:?}");
    }
}

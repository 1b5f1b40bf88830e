//! A2A Agent Cards: an `http` agent whose `url` is an agent card's
//! (`https://host/.well-known/agent-card.json`) learns from it where to send
//! its calls (the card's `url`, or its JSON-RPC interface's), whether the
//! agent streams (`capabilities.streaming`: calls then use
//! `message/stream`), and its skills.
//!
//! The card is read once per agent, at its first call ([`super::http::Http`]),
//! or ahead of time by [`discover`], which also makes each skill's `id` a
//! capability of the agent, so that tasks may `require` it. A card may only
//! send calls to its own origin (scheme, host and port): a card that names
//! another host fails, so that whoever serves the card cannot point Baton's
//! requests anywhere the URL it was given did not allow.

use baton_model::Agent;
use http::Uri;
use serde_json::Value;

use super::Failure;
use super::endpoint::{Egress, Endpoint, json_answer, status_failure};

/// Where A2A agents publish their card; `agent.json` is the name earlier
/// versions of the protocol used.
const CARD_PATHS: [&str; 2] = ["/.well-known/agent-card.json", "/.well-known/agent.json"];

/// Whether `url` is an agent card's.
pub fn is_card_url(url: &str) -> bool {
    url.parse::<Uri>()
        .is_ok_and(|u| CARD_PATHS.iter().any(|p| u.path().ends_with(p)))
}

/// What Baton uses of an agent card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Where calls go: the card's JSON-RPC interface.
    pub url: String,
    /// Whether the agent streams (`message/stream`).
    pub streaming: bool,
    /// Its skills' ids.
    pub skills: Vec<String>,
}

/// Reads the card `endpoint` points at.
pub(super) async fn fetch(endpoint: &Endpoint) -> Result<Card, Failure> {
    let (status, headers, body) = endpoint.get().await?;
    let url = endpoint.url();
    if !status.is_success() {
        return Err(status_failure(url, status, &headers, &body));
    }
    parse(url, &json_answer(url, &body)?).map_err(|m| Failure::permanent(format!("{url}: {m}")))
}

/// The card's JSON, checked: a JSON-RPC interface on the card's origin.
fn parse(card_url: &Uri, card: &Value) -> Result<Card, String> {
    // The main interface, unless it is not JSON-RPC and another is.
    let main = card.get("url").and_then(Value::as_str);
    let transport = card
        .get("preferredTransport")
        .and_then(Value::as_str)
        .unwrap_or("JSONRPC");
    let other = card
        .get("additionalInterfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| i.get("transport").and_then(Value::as_str) == Some("JSONRPC"))
        .and_then(|i| i.get("url").and_then(Value::as_str));
    let url = match (transport.eq_ignore_ascii_case("JSONRPC"), main, other) {
        (true, Some(url), _) | (false, _, Some(url)) => url,
        (true, None, _) => return Err("the agent card has no `url`".into()),
        (false, ..) => {
            return Err(format!(
                "the agent card offers `{transport}` and no JSON-RPC interface; Baton speaks A2A over JSON-RPC"
            ));
        }
    };
    let parsed: Uri = url
        .parse()
        .map_err(|e| format!("the agent card's url `{url}` is not a URL: {e}"))?;
    let origin = |u: &Uri| {
        (
            u.scheme_str().map(str::to_ascii_lowercase),
            u.host().map(str::to_ascii_lowercase),
            u.port_u16().or(match u.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            }),
        )
    };
    if origin(&parsed) != origin(card_url) {
        return Err(format!(
            "the agent card sends calls to `{url}`, another origin than the card's; \
             give the agent that URL itself if it is to be called"
        ));
    }
    Ok(Card {
        url: url.to_owned(),
        streaming: card.pointer("/capabilities/streaming") == Some(&Value::Bool(true)),
        skills: card
            .get("skills")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect(),
    })
}

/// Reads the card of each `http` agent whose `url` is a card's, ahead of
/// its runs: the agent then calls the card's interface (streaming if the
/// card says it can), and each skill's `id` becomes one of its
/// capabilities. Fails, naming the agent, on a card that cannot be read.
pub async fn discover(agents: &mut [Agent], egress: &Egress) -> Result<(), String> {
    for agent in agents.iter_mut() {
        let Some(url) = agent.url.as_deref().filter(|u| is_card_url(u)) else {
            continue;
        };
        if agent.kind != "http" {
            continue;
        }
        let name = &agent.name;
        let endpoint = Endpoint::new(url, &agent.headers, egress)
            .map_err(|m| format!("agent `{name}`: {m}"))?;
        let card = fetch(&endpoint)
            .await
            .map_err(|f| format!("agent `{name}`: cannot read its agent card: {}", f.message))?;
        agent.url = Some(card.url);
        agent.stream |= card.streaming;
        for skill in card.skills {
            if !agent.capabilities.contains(&skill) {
                agent.capabilities.push(skill);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn card_url() -> Uri {
        "https://agents.example/.well-known/agent-card.json"
            .parse()
            .unwrap()
    }

    #[test]
    fn card_urls_are_told_by_their_path() {
        assert!(is_card_url("https://a.example/.well-known/agent-card.json"));
        assert!(is_card_url("http://127.0.0.1:9/x/.well-known/agent.json"));
        assert!(!is_card_url("https://a.example/a2a"));
    }

    #[test]
    fn a_card_gives_its_interface_streaming_and_skills() {
        let card = json!({
            "name": "Transcriber", "url": "https://agents.example:443/a2a/v1",
            "capabilities": {"streaming": true},
            "skills": [{"id": "transcribe", "name": "Transcribe"}, {"id": "translate"}, {"name": "no id"}],
        });
        assert_eq!(
            parse(&card_url(), &card).unwrap(),
            Card {
                url: "https://agents.example:443/a2a/v1".into(),
                streaming: true,
                skills: vec!["transcribe".into(), "translate".into()],
            }
        );
    }

    #[test]
    fn a_card_preferring_another_transport_gives_its_json_rpc_interface() {
        let card = json!({
            "url": "https://agents.example/grpc", "preferredTransport": "GRPC",
            "additionalInterfaces": [{"url": "https://agents.example/rpc", "transport": "JSONRPC"}],
        });
        assert_eq!(
            parse(&card_url(), &card).unwrap().url,
            "https://agents.example/rpc"
        );
        let grpc_only = json!({"url": "https://agents.example/grpc", "preferredTransport": "GRPC"});
        let e = parse(&card_url(), &grpc_only).unwrap_err();
        assert!(e.contains("JSON-RPC"), "{e}");
    }

    #[test]
    fn a_card_may_not_send_calls_to_another_origin() {
        for url in [
            "https://elsewhere.example/a2a",
            "http://agents.example/a2a",
            "https://agents.example:8443/a2a",
        ] {
            let e = parse(&card_url(), &json!({ "url": url })).unwrap_err();
            assert!(e.contains("another origin"), "{url}: {e}");
        }
        let e = parse(&card_url(), &json!({"name": "x"})).unwrap_err();
        assert!(e.contains("no `url`"), "{e}");
    }
}

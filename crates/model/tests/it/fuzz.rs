//! Fuzzing on stable Rust: the workflow parser (YAML, JSON, WfFormat) and the
//! condition language get arbitrary bytes, and the repository's examples with
//! bytes flipped, deleted and inserted. Whatever comes in, the answer is a
//! checked workflow or an error with a message: never a panic. (`cargo fuzz`
//! needs a nightly compiler; proptest drives the same idea here, shrinking
//! what it finds to a small input.) `PROPTEST_CASES` sets the cases per
//! target: 256 in CI, 100,000 for a longer run (docs/operations.md).

use std::path::Path;

use baton_events::testing::mutate::{apply, edit};
use baton_model::expr::Expr;
use baton_model::{Limits, Source};
use proptest::prelude::*;
use proptest::sample::Index;

/// The examples and traces of the repository: real documents to mutate.
fn examples() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in [
        "examples",
        "examples/traces",
        "examples/patterns",
        "examples/teams",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let keep = path.extension().is_some_and(|e| e == "yaml" || e == "json");
            if keep {
                out.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 8, "examples to mutate: {}", out.len());
    out
}

/// Loads `bytes` as the file `name`: Ok, or an error that says something.
fn load(name: &str, bytes: Vec<u8>) {
    let source = match Source::from_bytes(name, bytes, None, Limits::default()) {
        Ok(source) => source,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    match baton_model::load(&source) {
        Ok(_) => {}
        Err(baton_model::Error::Invalid { report, .. }) => {
            assert!(
                !report.diagnostics.is_empty(),
                "an invalid document without a finding"
            );
            // Rendering points into the text: it must not panic either.
            let _ = source.render(&report);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Conditions built from the language's own tokens, so that most of them
/// get past the lexer and exercise the parser and the evaluator.
fn condition() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "a.output",
        "b.status",
        ".x",
        "[0]",
        "[99999999999999999999]",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "&&",
        "||",
        "!",
        "(",
        ")",
        "'s'",
        "\"t\"",
        "1",
        "-2.5e3",
        "true",
        "false",
        "null",
        " ",
        "a",
        ".",
        "[",
        "]",
        "'",
        "\"",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_or_loaded_never_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        name in prop::sample::select(vec!["f.yaml", "f.json", "f"]),
    ) {
        load(name, bytes);
    }

    #[test]
    fn mutated_examples_are_refused_or_loaded_never_a_panic(
        pick in any::<Index>(),
        edits in prop::collection::vec(edit(b"{}[]:,\"'-#&*!|>\n\t \\"), 1..8),
    ) {
        thread_local! {
            static EXAMPLES: Vec<(String, Vec<u8>)> = examples();
        }
        let (name, mut bytes) = EXAMPLES.with(|e| e[pick.index(e.len())].clone());
        apply(&mut bytes, &edits);
        load(&name, bytes);
    }

    #[test]
    fn conditions_parse_or_say_why_and_evaluate_without_a_panic(
        text in prop_oneof![condition(), "\\PC{0,48}"],
        value in prop_oneof![
            Just(serde_json::json!(null)),
            Just(serde_json::json!({"x": [1, "s", true]})),
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,8}".prop_map(serde_json::Value::from),
        ],
    ) {
        match Expr::parse(&text) {
            Ok(expr) => {
                let _ = expr.references();
                let _ = expr.eval(&|_| Some(value.clone()));
                let _ = expr.eval(&|_| None);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

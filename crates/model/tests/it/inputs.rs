//! Hostile and broken inputs: a clear error every time, never a panic or a hang.

use std::time::{Duration, Instant};

use baton_model::{Error, Format, Limits, Source, load};

fn load_bytes(
    bytes: &[u8],
    hint: Option<Format>,
    limits: Limits,
) -> Result<baton_model::Checked, Error> {
    let src = Source::from_bytes("input", bytes.to_vec(), hint, limits)?;
    load(&src)
}

#[test]
fn empty_and_blank_files() {
    for text in ["", "   \n\t\n"] {
        let e = load_bytes(text.as_bytes(), None, Limits::default()).unwrap_err();
        assert!(matches!(e, Error::Empty { .. }), "{e}");
        assert!(e.to_string().contains("is empty"));
    }
}

#[test]
fn non_utf8_is_located() {
    let e = load_bytes(b"tasks:\n  - id: \xff\xfe\n", None, Limits::default()).unwrap_err();
    assert!(matches!(e, Error::NotUtf8 { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "input:2:9: invalid UTF-8: workflows must be UTF-8 text"
    );
}

#[test]
fn binary_garbage_is_not_text() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let e = load_bytes(&garbage, None, Limits::default()).unwrap_err();
    assert!(
        matches!(e, Error::Binary { .. } | Error::NotUtf8 { .. }),
        "{e}"
    );
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let limits = Limits { max_bytes: 100 };
    let e = load_bytes(&[b' '; 101], None, limits).unwrap_err();
    assert!(e.to_string().contains("over the limit of 100 bytes"), "{e}");
}

#[test]
fn yaml_alias_bombs_are_refused_quickly() {
    let bomb = r#"
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
tasks: [*h]
"#;
    let started = Instant::now();
    let e = load_bytes(bomb.as_bytes(), Some(Format::Yaml), Limits::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, Error::Syntax { .. }), "{e}");
}

#[test]
fn deeply_nested_documents_are_refused() {
    let depth = 100_000;
    let yaml = "[".repeat(depth) + &"]".repeat(depth);
    let e = load_bytes(yaml.as_bytes(), Some(Format::Yaml), Limits::default()).unwrap_err();
    assert!(matches!(e, Error::Syntax { .. }), "{e}");
    let json = "{\"tasks\": ".to_string() + &"[".repeat(depth) + &"]".repeat(depth) + "}";
    let e = load_bytes(json.as_bytes(), Some(Format::Json), Limits::default()).unwrap_err();
    assert!(matches!(e, Error::Syntax { .. }), "{e}");
    // Inside `input` (any JSON), nesting is bounded by the parser's recursion limit.
    let json = "{\"tasks\": [{\"id\": \"a\", \"input\": ".to_string()
        + &"[".repeat(depth)
        + &"]".repeat(depth)
        + "}]}";
    let e = load_bytes(json.as_bytes(), Some(Format::Json), Limits::default()).unwrap_err();
    assert!(e.to_string().contains("recursion limit"), "{e}");
}

#[test]
fn documents_of_the_wrong_shape() {
    for (text, format) in [
        ("[1, 2, 3]", Format::Json),
        ("just a string", Format::Yaml),
        ("42", Format::Json),
        ("tasks: 5", Format::Yaml),
        ("{\"tasks\": [7]}", Format::Json),
    ] {
        let e = load_bytes(text.as_bytes(), Some(format), Limits::default()).unwrap_err();
        assert!(matches!(e, Error::Syntax { .. }), "{text}: {e}");
        assert!(e.to_string().contains("expected"), "{text}: {e}");
    }
}

#[test]
fn a_missing_file_is_an_io_error() {
    let e = Source::read(
        std::path::Path::new("/definitely/not/here.yaml"),
        Limits::default(),
    )
    .unwrap_err();
    assert!(e.is_io());
    assert!(
        e.to_string()
            .starts_with("cannot read /definitely/not/here.yaml"),
        "{e}"
    );
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    let e = load_bytes(
        b"tasks:\n  - { id: a, id: b }\n",
        Some(Format::Yaml),
        Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("input:2"), "{e}");
}

//! Diagnostics: what is wrong, where (JSON path and file:line:column), and a hint.

use std::fmt;

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A JSON path into the document, printed as `$.workflow.tasks[3].depends_on[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// The document root.
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_string()));
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.0 {
            match seg {
                Seg::Key(k)
                    if !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_') =>
                {
                    write!(f, ".{k}")?
                }
                Seg::Key(k) => write!(f, "[{}]", serde_json::Value::from(k.as_str()))?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The workflow is invalid.
    Error,
    /// Suspicious but valid.
    Warning,
}

/// One finding about a workflow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable machine-readable code (`unknown-dependency`, `cycle`, ...).
    pub code: &'static str,
    /// What is wrong, in a sentence.
    pub message: String,
    /// Where, as a JSON path into the document.
    #[serde(serialize_with = "display")]
    pub path: Path,
    /// Where, in the file (filled in by [`crate::Source::locate`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

fn display<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

impl Diagnostic {
    /// An error at `path`.
    pub fn error(code: &'static str, path: Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            path,
            location: None,
            hint: None,
        }
    }

    /// A warning at `path`.
    pub fn warning(code: &'static str, path: Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, path, message)
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint when there is one.
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }
}

/// The findings about one document: every error and warning, capped at a
/// limit (the number left out is counted).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// The findings kept, in document order where possible.
    pub diagnostics: Vec<Diagnostic>,
    /// How many more were found but not kept.
    pub omitted: usize,
    /// Errors found in all (kept or not).
    pub error_count: usize,
}

/// How many diagnostics a report keeps.
pub const MAX_DIAGNOSTICS: usize = 50;

impl Report {
    /// Adds a finding.
    pub fn push(&mut self, d: Diagnostic) {
        if d.severity == Severity::Error {
            self.error_count += 1;
        }
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push(d);
        } else {
            self.omitted += 1;
        }
    }

    /// Whether any error was found.
    pub fn has_errors(&self) -> bool {
        self.error_count > 0
    }

    /// Whether the report can take more diagnostics (used to skip costly hints).
    pub fn is_full(&self) -> bool {
        self.diagnostics.len() >= MAX_DIAGNOSTICS
    }

    /// The warnings kept.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

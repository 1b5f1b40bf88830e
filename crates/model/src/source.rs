//! Reading a workflow document: size and encoding checks, format detection,
//! parsing, and rendering diagnostics against the text.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path as FsPath;

use crate::diag::{Location, Path, Report, Severity};
use crate::{Error, locate, wfformat};

/// The language a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Baton's schema in JSON.
    Json,
    /// Baton's schema in YAML.
    Yaml,
    /// A WfCommons WfFormat instance (JSON).
    WfFormat,
}

/// Limits on what is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest document accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// A document's text and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// A display name: the path as given, or `<stdin>`.
    pub name: String,
    /// The text (checked to be UTF-8 and not binary).
    pub text: String,
    /// How it is parsed.
    pub format: Format,
}

impl Source {
    /// Reads a file, or standard input when `path` is `-`. The format comes
    /// from the extension (`.json`, `.yaml`, `.yml`), else from the content.
    pub fn read(path: &FsPath, limits: Limits) -> Result<Source, Error> {
        let name = path.display().to_string();
        let io = |cause| Error::Io {
            name: name.clone(),
            cause,
        };
        let mut bytes = Vec::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .take(limits.max_bytes + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
            return Source::from_bytes("<stdin>", bytes, None, limits);
        }
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > limits.max_bytes {
            return Err(Error::TooLarge {
                name,
                size,
                limit: limits.max_bytes,
            });
        }
        file.take(limits.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let hint = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Some(Format::Json),
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                Some(Format::Yaml)
            }
            _ => None,
        };
        Source::from_bytes(&name, bytes, hint, limits)
    }

    /// Checks raw bytes and picks the format (`hint` wins over content,
    /// except that JSON carrying `schemaVersion` is WfFormat).
    pub fn from_bytes(
        name: &str,
        bytes: Vec<u8>,
        hint: Option<Format>,
        limits: Limits,
    ) -> Result<Source, Error> {
        let name = name.to_string();
        if bytes.len() as u64 > limits.max_bytes {
            return Err(Error::TooLarge {
                name,
                size: bytes.len() as u64,
                limit: limits.max_bytes,
            });
        }
        if let Some(at) = bytes.iter().position(|&b| b == 0) {
            return Err(Error::Binary { name, offset: at });
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let valid = std::str::from_utf8(&e.as_bytes()[..offset]).unwrap_or_default();
                let line = valid.matches('\n').count() + 1;
                let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                return Err(Error::NotUtf8 {
                    name,
                    location: Location { line, column },
                });
            }
        };
        // A UTF-8 byte-order mark is legal but means nothing to the parsers.
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        if text.trim().is_empty() {
            return Err(Error::Empty { name });
        }
        let looks_json = text.trim_start().starts_with(['{', '[']);
        let format = match hint {
            Some(Format::Yaml) => Format::Yaml,
            Some(_) if wfformat::detect(&text) => Format::WfFormat,
            Some(f) => f,
            None if looks_json && wfformat::detect(&text) => Format::WfFormat,
            None if looks_json => Format::Json,
            None => Format::Yaml,
        };
        Ok(Source { name, text, format })
    }

    /// A source from a string (for tests and embedding).
    pub fn from_str(name: &str, text: &str, format: Format) -> Source {
        Source {
            name: name.to_string(),
            text: text.to_string(),
            format,
        }
    }

    /// Fills in the file location of every diagnostic in `report`.
    pub fn locate(&self, report: &mut Report) {
        if report.diagnostics.is_empty() {
            // Locating walks the whole text again: not for nothing.
            return;
        }
        let paths: Vec<Path> = report
            .diagnostics
            .iter()
            .map(|d| match self.format {
                Format::WfFormat => wfformat::source_path(&d.path),
                _ => d.path.clone(),
            })
            .collect();
        let refs: Vec<&Path> = paths.iter().collect();
        let found = match self.format {
            Format::Json | Format::WfFormat => locate::json(&self.text, &refs),
            Format::Yaml => locate::yaml(&self.text, &refs),
        };
        for (d, loc) in report.diagnostics.iter_mut().zip(found) {
            d.location = loc;
        }
        for (d, p) in report.diagnostics.iter_mut().zip(paths) {
            d.path = p;
        }
        // Document order reads best; unlocated findings go last.
        report
            .diagnostics
            .sort_by_key(|d| d.location.map_or((usize::MAX, 0), |l| (l.line, l.column)));
    }

    /// Renders a located report for people, compiler style:
    ///
    /// ```text
    /// error[unknown-dependency]: task `analyze` depends on unknown task `reserch`
    ///   --> flow.yaml:9:52 ($.workflow.tasks[2].depends_on[0])
    ///    |
    ///  9 |     - { id: "analyze", agent: "analyzer", depends_on: ["reserch"] }
    ///    |                                                        ^
    ///    = hint: did you mean `research`?
    /// ```
    pub fn render(&self, report: &Report) -> String {
        self.render_styled(report, false)
    }

    /// [`Source::render`], with ANSI colors when `color` is set (for a
    /// terminal): the level in red or yellow, locations in blue, hints in
    /// cyan.
    pub fn render_styled(&self, report: &Report, color: bool) -> String {
        let paint = |code: &'static str| if color { code } else { "" };
        let (blue, cyan, reset) = (paint("\x1b[34m"), paint("\x1b[36m"), paint("\x1b[0m"));
        let mut out = String::new();
        for d in &report.diagnostics {
            let (level, hue) = match d.severity {
                Severity::Error => ("error", paint("\x1b[1;31m")),
                Severity::Warning => ("warning", paint("\x1b[1;33m")),
            };
            let _ = writeln!(out, "{hue}{level}[{}]{reset}: {}", d.code, d.message);
            match d.location {
                Some(loc) => {
                    let _ = writeln!(
                        out,
                        "  {blue}-->{reset} {}:{}:{} ({})",
                        self.name, loc.line, loc.column, d.path
                    );
                    out.push_str(&self.snippet(loc, (blue, hue, reset)));
                }
                None => {
                    let _ = writeln!(out, "  {blue}-->{reset} {} ({})", self.name, d.path);
                }
            }
            if let Some(hint) = &d.hint {
                let _ = writeln!(out, "   {cyan}= hint:{reset} {hint}");
            }
        }
        if report.omitted > 0 {
            let _ = writeln!(out, "... and {} more not shown", report.omitted);
        }
        out
    }

    /// The source line at `loc` with a caret under the column; long lines are
    /// cut to a window around it.
    /// The line at `loc` and a caret under its column; `paint` is the
    /// gutter's, the caret's and the reset's escape codes (empty: plain).
    fn snippet(&self, loc: Location, paint: (&str, &str, &str)) -> String {
        let (gutter_hue, caret_hue, reset) = paint;
        let Some(line) = self.text.lines().nth(loc.line - 1) else {
            return String::new();
        };
        const WIDTH: usize = 100;
        let chars: Vec<char> = line.chars().collect();
        let col = loc.column.saturating_sub(1).min(chars.len());
        let start = if chars.len() <= WIDTH {
            0
        } else {
            col.saturating_sub(WIDTH / 2)
        };
        let end = (start + WIDTH).min(chars.len());
        let shown: String = chars[start..end].iter().collect();
        let prefix = if start > 0 { "…" } else { "" };
        let gutter = loc.line.to_string().len();
        format!(
            "{gutter_hue}{:gutter$} |{reset}\n{gutter_hue}{} |{reset} {prefix}{}\n{gutter_hue}{:gutter$} |{reset} {}{}{caret_hue}^{reset}\n",
            "",
            loc.line,
            shown.trim_end(),
            "",
            " ".repeat(prefix.chars().count()),
            " ".repeat(col - start),
        )
    }
}

//! The log on stderr: `--log-level` (or `BATON_LOG`, or `RUST_LOG`) chooses
//! what is written, `--log-format` how (text, or one JSON object per line).

use std::io::IsTerminal as _;

use anyhow::Context as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// When stderr gets colors: `auto` on a terminal unless `NO_COLOR` is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    /// Always (a pager that keeps colors, say).
    Always,
    /// Never.
    Never,
}

static COLOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Decides, once, whether what goes to stderr is colored.
pub fn set_color(choice: Color) {
    let on = match choice {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let _ = COLOR.set(on);
}

/// Whether what goes to stderr is colored (diagnostics, the log).
pub fn color() -> bool {
    COLOR.get().copied().unwrap_or(false)
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `2026-12-06T22:48:05.123456Z  INFO baton_server: serving addr=…`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// Installs the log: `level` (a level such as `info`, or directives such as
/// `warn,baton::access=info`), else `BATON_LOG`, else `RUST_LOG`, else
/// `default`. Colors as [`color`] says.
pub fn install(level: Option<&str>, format: Format, default: &str) -> anyhow::Result<()> {
    let from_env = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    let (spec, origin) = match level {
        Some(l) => (l.to_owned(), "--log-level"),
        None => match from_env("BATON_LOG") {
            Some(v) => (v, "BATON_LOG"),
            None => match from_env("RUST_LOG") {
                Some(v) => (v, "RUST_LOG"),
                None => (default.to_owned(), "the default"),
            },
        },
    };
    // A directive without `=` must be a level (`Targets` would take a typo
    // for a target's name and log nothing of it).
    let bare_levels = spec
        .split(',')
        .filter(|d| !d.contains('='))
        .all(|d| d.trim().parse::<LevelFilter>().is_ok());
    let targets = bare_levels
        .then(|| spec.parse::<Targets>().ok())
        .flatten()
        .with_context(|| {
            format!(
                "{origin} `{spec}` is not a log level (error, warn, info, debug, trace, off) \
                 or directives such as `warn,baton_server=debug`"
            )
        })?;
    let ansi = color();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(targets);
    let installed = match format {
        Format::Text => registry.with(layer).try_init(),
        Format::Json => registry.with(layer.json()).try_init(),
    };
    installed.context("installing the log")
}

//! End-to-end tests of the `baton` binary: exit codes, output contracts, and
//! the examples in the repository.

#![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

mod bench;
#[cfg(feature = "distributed")]
mod cluster;
mod docs;
mod events;
mod generate;
mod load;
mod plan;
mod run;
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `baton` with `args` (and `stdin`, if any).
pub fn baton(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.args(args)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn baton");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("wait for baton")
}

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

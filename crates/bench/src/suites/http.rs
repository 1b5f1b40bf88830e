//! `http`: the HTTP API through `baton serve` on a loopback port.
//!
//! Not measured yet: it needs `baton serve` (crate `baton-server`), which has
//! not landed in the binary.

use crate::{Config, Error, Sink};

pub(crate) fn run(_config: &Config, _sink: &mut Sink<'_>) -> Result<(), Error> {
    Err(Error::Unavailable(
        "the http suite needs `baton serve` (crates/server), which is not in this build yet".into(),
    ))
}

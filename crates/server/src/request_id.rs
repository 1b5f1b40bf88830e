//! Request ids: every request gets one (the caller's `x-request-id`, or a new
//! one), held in a task-local while it is answered, so that the error
//! boundary puts it in problem+json bodies and a forwarded call passes it on.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;

/// The header carrying a request's id, in and out.
pub(crate) const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request being answered (problem+json bodies carry it).
    pub(crate) static CURRENT: Arc<str>;
}

/// A caller's request id, if it is one worth keeping: 1 to 128 visible
/// ASCII characters.
pub(crate) fn given_id(req: &Request) -> Option<Arc<str>> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())).then(|| v.into())
}

/// A new request id: 16 hex digits, unpredictable across processes.
pub(crate) fn new_id() -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", SEED.get_or_init(RandomState::new).hash_one(n)).into()
}

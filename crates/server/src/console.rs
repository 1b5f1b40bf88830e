//! The console: a web UI over the public API (`crates/server/console/`),
//! embedded in the binary and served at `/ui/` (`/` redirects there). The
//! assets need no build step; they are revalidated by `ETag` and sent
//! compressed (`deflate`, made once) to browsers that accept it.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bytes::Bytes;

struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// `body` in the zlib format HTTP calls `deflate`, made at first use.
    deflated: OnceLock<Bytes>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            deflated: OnceLock::new(),
        }
    }

    fn deflated(&self) -> &Bytes {
        self.deflated.get_or_init(|| {
            Bytes::from(miniz_oxide::deflate::compress_to_vec_zlib(
                self.body.as_bytes(),
                9,
            ))
        })
    }
}

static INDEX: Asset = Asset::new(
    include_str!("../console/index.html"),
    "text/html; charset=utf-8",
);
static SCRIPT: Asset = Asset::new(
    include_str!("../console/console.js"),
    "text/javascript; charset=utf-8",
);
static STYLE: Asset = Asset::new(
    include_str!("../console/console.css"),
    "text/css; charset=utf-8",
);

/// The console's routes; they need no token (the pages ask for one and
/// send it with every API call).
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/ui/console.js",
            get(|h: HeaderMap| async move { serve(&SCRIPT, &h) }),
        )
        .route(
            "/ui/console.css",
            get(|h: HeaderMap| async move { serve(&STYLE, &h) }),
        )
}

/// One `ETag` for all three assets (they change together, with the binary),
/// and one for their compressed forms: two representations, two tags.
fn etag(deflated: bool) -> &'static HeaderValue {
    static TAGS: OnceLock<[HeaderValue; 2]> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
        for asset in [&INDEX, &SCRIPT, &STYLE] {
            for b in asset.body.bytes() {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{hash:016x}{suffix}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        };
        [tag(""), tag("-deflate")]
    });
    &tags[usize::from(deflated)]
}

/// Whether the request's `Accept-Encoding` takes `deflate` (a `q=0` refuses it).
fn accepts_deflate(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let refused = |p: &str| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            };
            parts
                .next()
                .is_some_and(|c| c.eq_ignore_ascii_case("deflate"))
                && !parts.any(refused)
        })
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let deflated = accepts_deflate(request);
    let tag = etag(deflated);
    let headers = [
        (header::ETAG, tag.clone()),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if request.get(header::IF_NONE_MATCH) == Some(tag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if deflated {
        let encoding = (
            header::CONTENT_ENCODING,
            HeaderValue::from_static("deflate"),
        );
        return (headers, [content_type, encoding], asset.deflated().clone()).into_response();
    }
    (headers, [content_type], asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_is_quoted_and_stable() {
        let tag = etag(false).to_str().unwrap().to_string();
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() == 18,
            "{tag}"
        );
        assert_eq!(etag(false).to_str().unwrap(), tag);
        assert_ne!(etag(true), etag(false), "two representations, two tags");
    }

    #[test]
    fn deflate_is_sent_to_whoever_accepts_it() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_deflate(&h)
        };
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("deflate;q=0.5"));
        assert!(with("DEFLATE"));
        assert!(!with("gzip, br"));
        assert!(!with("deflate;q=0"));
        assert!(!with("deflate; q=0.0"));
        assert!(with("deflate;q=1"));
        assert!(!accepts_deflate(&HeaderMap::new()));
    }

    #[test]
    fn the_deflated_script_reads_back_whole() {
        let packed = SCRIPT.deflated();
        assert!(
            packed.len() * 3 < SCRIPT.body.len(),
            "{} bytes",
            packed.len()
        );
        let back = miniz_oxide::inflate::decompress_to_vec_zlib(packed).unwrap();
        assert_eq!(back, SCRIPT.body.as_bytes());
    }
}

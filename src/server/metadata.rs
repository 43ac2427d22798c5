//! Incoming metadata is the client's to write, so what the service keeps or passes on is checked
//! first: an `x-request-id` is kept only if it is at most 128 characters of `[A-Za-z0-9._:-]`
//! (else the request gets a fresh one); a `traceparent` only if it follows the W3C rules (else
//! it is dropped with its `tracestate`, and the request starts a trace of its own); a
//! `tracestate` is cut to 32 well-formed entries and 512 bytes before it is stored in the queue
//! or forwarded to the Processor.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue};
use observability::propagation::trace_id;
use tower::{Layer, Service};

/// Longest `x-request-id` kept.
pub const MAX_REQUEST_ID: usize = 128;
/// Most `tracestate` entries kept.
pub const MAX_TRACESTATE_ENTRIES: usize = 32;
/// Longest `tracestate` kept, in bytes.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// Wraps services in [`Metadata`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MetadataLayer;

impl<S> Layer<S> for MetadataLayer {
    type Service = Metadata<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metadata { inner }
    }
}

/// See the module.
#[derive(Clone, Debug)]
pub struct Metadata<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Metadata<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        sanitize(request.headers_mut());
        self.inner.call(request)
    }
}

/// Applies the module's rules to `headers`.
pub fn sanitize(headers: &mut HeaderMap) {
    if !headers
        .get_all("x-request-id")
        .iter()
        .all(|id| is_request_id(id.as_bytes()))
        || headers.get_all("x-request-id").iter().count() > 1
    {
        headers.remove("x-request-id");
    }
    let keep_parent = {
        let mut parents = headers.get_all("traceparent").iter();
        match (parents.next(), parents.next()) {
            (Some(one), None) => trace_id(one.as_bytes()).is_some(),
            _ => false,
        }
    };
    if !keep_parent {
        headers.remove("traceparent");
        headers.remove("tracestate");
        return;
    }
    let state: Vec<String> = headers
        .get_all("tracestate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    headers.remove("tracestate");
    if let Some(kept) = trim_tracestate(&state.join(","))
        && let Ok(value) = HeaderValue::from_str(&kept)
    {
        headers.insert("tracestate", value);
    }
}

fn is_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The well-formed entries of a `tracestate`, at most [`MAX_TRACESTATE_ENTRIES`] and
/// [`MAX_TRACESTATE_BYTES`] (entries are dropped from the end, as the W3C text says); `None`
/// when none is left.
fn trim_tracestate(value: &str) -> Option<String> {
    let mut kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|entry| is_tracestate_entry(entry))
        .take(MAX_TRACESTATE_ENTRIES)
        .collect();
    while !kept.is_empty() && kept.join(",").len() > MAX_TRACESTATE_BYTES {
        kept.pop();
    }
    (!kept.is_empty()).then(|| kept.join(","))
}

/// `key=value`: a key of `[a-z0-9_*/@-]` (a tenant part before `@`), up to 256 bytes; a value of
/// printable ASCII without `,` and `=`, up to 256 bytes, not ending in a space.
fn is_tracestate_entry(entry: &str) -> bool {
    let Some((key, value)) = entry.split_once('=') else {
        return false;
    };
    let key_ok = !key.is_empty()
        && key.len() <= 256
        && key.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
        });
    let value_ok = !value.is_empty()
        && value.len() <= 256
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=');
    key_ok && value_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn sanitized(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        sanitize(&mut headers);
        headers
    }

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        let ok = "a1.B2_c3:d4-e5";
        assert_eq!(sanitized(&[("x-request-id", ok)])["x-request-id"], ok);
        for bad in ["x".repeat(129), "with space".into(), "é".into(), "".into()] {
            assert!(
                sanitized(&[("x-request-id", &bad)])
                    .get("x-request-id")
                    .is_none(),
                "{bad:?}"
            );
        }
        assert!(
            sanitized(&[("x-request-id", "a"), ("x-request-id", "b")])
                .get("x-request-id")
                .is_none()
        );
    }

    #[test]
    fn a_traceparent_is_kept_only_when_it_follows_the_rules() {
        assert_eq!(sanitized(&[("traceparent", PARENT)])["traceparent"], PARENT);
        assert_eq!(
            trace_id(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let headers = sanitized(&[("traceparent", bad), ("tracestate", "a=b")]);
            assert!(headers.get("traceparent").is_none(), "{bad}");
            assert!(
                headers.get("tracestate").is_none(),
                "{bad}: its tracestate goes too"
            );
        }
    }

    #[test]
    fn a_tracestate_is_cut_to_its_bounds() {
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=v{i}")).collect();
        let headers = sanitized(&[("traceparent", PARENT), ("tracestate", &many.join(","))]);
        let kept = headers["tracestate"].to_str().unwrap();
        assert_eq!(kept.split(',').count(), MAX_TRACESTATE_ENTRIES);
        assert!(kept.starts_with("k0=v0,k1=v1"));

        let long = format!("a={},b={},c=ok", "x".repeat(250), "y".repeat(250));
        let headers = sanitized(&[("traceparent", PARENT), ("tracestate", &long)]);
        let kept = headers["tracestate"].to_str().unwrap();
        assert!(kept.len() <= MAX_TRACESTATE_BYTES, "{}", kept.len());
        assert!(kept.starts_with("a=x"));

        let headers = sanitized(&[("traceparent", PARENT), ("tracestate", "BAD=1,good=2, =x")]);
        assert_eq!(headers["tracestate"], "good=2");
        let headers = sanitized(&[("tracestate", "a=b")]);
        assert!(
            headers.get("tracestate").is_none(),
            "no tracestate without a traceparent"
        );
    }
}

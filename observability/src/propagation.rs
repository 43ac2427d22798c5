//! W3C trace context (`traceparent`, `tracestate`) in and out of gRPC metadata (HTTP headers)
//! and the field/value pairs a queue entry carries, so a trace continues across the queue.
//!
//! When spans are not exported they have no OpenTelemetry context: [`to_fields`] is then empty,
//! and callers fall back to [`passthrough`], the caller's own context, carried unchanged.

use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` a child of the context in `headers`, if there is one.
pub fn set_parent_from_headers(span: &Span, headers: &http::HeaderMap) {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(cx);
}

/// Writes `span`'s context into `headers`.
pub fn inject_headers(span: &Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// `span`'s context as field/value pairs (empty when the span has none).
pub fn to_fields(span: &Span) -> Vec<(String, String)> {
    let cx = span.context();
    let mut fields = FieldInjector(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut fields));
    fields.0
}

/// The W3C fields of incoming metadata, as they came (for when this service records no spans).
pub fn passthrough(headers: &http::HeaderMap) -> Vec<(String, String)> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| Some((key.to_owned(), headers.get(key)?.to_str().ok()?.to_owned())))
        .collect()
}

/// Makes `span` a child of the context carried in `fields`, if any.
pub fn set_parent_from_fields(span: &Span, fields: &[(String, String)]) {
    if fields.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&FieldExtractor(fields)));
    let _ = span.set_parent(cx);
}

/// The trace id of a W3C `traceparent` that follows the rules (`version-traceid-parentid-flags`,
/// lowercase hex, the ids not all zeros, version `ff` invalid; version 00 has exactly those four
/// fields, later versions may add fields after a `-`); `None` for any other value.
pub fn trace_id(traceparent: &[u8]) -> Option<&str> {
    let hex = |part: &[u8]| part.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if traceparent.len() < 55 {
        return None;
    }
    let (version, rest) = traceparent.split_at(2);
    if !hex(version) || version == b"ff" || rest[0] != b'-' {
        return None;
    }
    let trace_id = &rest[1..33];
    let parent_id = &rest[34..50];
    let flags = &rest[51..53];
    let well_formed = rest[33] == b'-'
        && rest[50] == b'-'
        && hex(trace_id)
        && hex(parent_id)
        && hex(flags)
        && trace_id.iter().any(|b| *b != b'0')
        && parent_id.iter().any(|b| *b != b'0');
    let tail = &rest[53..];
    let tail_ok = if version == b"00" {
        tail.is_empty()
    } else {
        tail.is_empty() || tail[0] == b'-'
    };
    // Lowercase hex digits only: always UTF-8.
    (well_formed && tail_ok).then(|| std::str::from_utf8(trace_id).ok())?
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct FieldExtractor<'a>(&'a [(String, String)]);

impl Extractor for FieldExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

struct FieldInjector(Vec<(String, String)>);

impl Injector for FieldInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

//! gRPC over raw HTTP/2 (hyper's client, no gRPC library in the way): requests whose framing and
//! headers a test controls exactly, and answers read off the wire, status from the headers
//! (trailers-only) or the trailers. No client-side timer: a `grpc-timeout` sent is only the
//! server's business.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::poll_fn,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use hyper::{
    body::{Body, Bytes, Frame},
    client::conn::http2,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Code;

/// A gRPC message frame: compressed-flag, big-endian declared length, then the bytes.
pub fn frame(flag: u8, declared: u32, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(flag);
    out.extend_from_slice(&declared.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// `message` framed as gRPC sends it: uncompressed, its true length.
pub fn well_framed(message: &[u8]) -> Vec<u8> {
    frame(0, message.len() as u32, message)
}

/// A request body sent as the given DATA frames.
pub struct Raw(VecDeque<Bytes>);

impl Body for Raw {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// A gRPC answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub code: Code,
    /// The status message, decoded.
    pub message: String,
    /// Where `grpc-status` was: `headers` (trailers-only) or `trailers`.
    pub place: &'static str,
    /// The response body (framed messages).
    pub data: Vec<u8>,
    /// The response's headers.
    pub headers: http::HeaderMap,
}

/// `grpc-message` is percent-encoded.
pub fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let Some(hex) = raw.get(i + 1..i + 3)
            && hex.iter().all(u8::is_ascii_hexdigit)
            && let Ok(byte) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status in a header map (the headers of a trailers-only answer, or the trailers).
pub fn status_of(map: &http::HeaderMap) -> Option<(Code, String)> {
    let raw = map.get("grpc-status")?;
    let code = raw
        .to_str()
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Unknown);
    let message = map
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some((code, message))
}

/// Sends one request and reads the whole answer; an `Err` is a protocol failure (reset stream,
/// connection error, not HTTP 200, no `grpc-status`).
pub async fn exchange<V: AsRef<[u8]>>(
    sender: &mut http2::SendRequest<Raw>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, V)],
    chunks: &[Vec<u8>],
) -> Result<Answer, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{}", path))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(
            *name,
            http::HeaderValue::from_bytes(value.as_ref()).expect("a header value"),
        );
    }
    let body = Raw(chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect());
    let response = sender
        .send_request(request.body(body).unwrap())
        .await
        .map_err(|e| format!("request failed (reset stream or connection error): {e:?}"))?;
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            format!(
                "response body failed after HTTP {} (reset stream?): {e:?}",
                parts.status
            )
        })?;
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    if parts.status != http::StatusCode::OK {
        return Err(format!(
            "HTTP {} instead of 200 (headers {:?})",
            parts.status, parts.headers
        ));
    }
    let (status, place) = match (
        status_of(&parts.headers),
        trailers.as_ref().and_then(status_of),
    ) {
        (Some(s), _) => (s, "headers"),
        (None, Some(s)) => (s, "trailers"),
        (None, None) => {
            return Err(format!(
                "no grpc-status in headers {:?} or trailers {trailers:?}",
                parts.headers
            ));
        }
    };
    Ok(Answer {
        code: status.0,
        message: status.1,
        place,
        data,
        headers: parts.headers,
    })
}

/// One HTTP/2 connection; its driver's errors are recorded.
pub async fn connect(addr: SocketAddr, errors: Arc<Mutex<Vec<String>>>) -> http2::SendRequest<Raw> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Without it, Nagle's algorithm and delayed ACKs add ~40 ms to every small request.
    tcp.set_nodelay(true).unwrap();
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            errors
                .lock()
                .unwrap()
                .push(format!("the HTTP/2 connection failed: {e:?}"));
        }
    });
    sender
}

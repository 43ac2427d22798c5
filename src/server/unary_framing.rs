//! Unary requests' bodies, read in full before the request goes on: within
//! `TASK_REQUEST_BODY_TIMEOUT` (else DEADLINE_EXCEEDED), and through the gRPC framing checks —
//! one message, a valid compressed-flag, a declared length within the limit, no truncation. A
//! malformed body gets INVALID_ARGUMENT (RESOURCE_EXHAUSTED when it declares too large a
//! message) saying what is wrong, where tonic would answer INTERNAL; a unary call carrying a
//! second message is refused before its handler runs. Placed above the load shedder, a body
//! that trickles in (one byte a second, say) holds no in-flight slot while it does.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use tonic::body::Body as TonicBody;
use tower::{Layer, Service, ServiceExt};

use crate::error::{BoxError, FramingError, RequestBodyTimedOut, status_for_framing};

/// Reads the request bodies of the calls whose path starts with `prefix` (unary methods only).
#[derive(Clone, Copy, Debug)]
pub struct UnaryFramingLayer {
    prefix: &'static str,
    max_message_bytes: usize,
    body_timeout: Duration,
}

impl UnaryFramingLayer {
    /// Reads the calls under `prefix` (e.g. `/task.Task/`), whose messages may be up to
    /// `max_message_bytes` long and whose bodies must arrive within `body_timeout`.
    pub fn new(prefix: &'static str, max_message_bytes: usize, body_timeout: Duration) -> Self {
        Self {
            prefix,
            max_message_bytes,
            body_timeout,
        }
    }
}

impl<S> Layer<S> for UnaryFramingLayer {
    type Service = UnaryFraming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UnaryFraming {
            inner,
            config: *self,
        }
    }
}

/// See [`UnaryFramingLayer`].
#[derive(Clone, Debug)]
pub struct UnaryFraming<S> {
    inner: S,
    config: UnaryFramingLayer,
}

impl<S> Service<http::Request<TonicBody>> for UnaryFraming<S>
where
    S: Service<http::Request<TonicBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Ready at once: the layers below (the load shedder takes its slot when polled ready)
        // are asked only once the body is in, by the call's own future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<TonicBody>) -> Self::Future {
        let mut inner = self.inner.clone();
        if !request.uri().path().starts_with(self.config.prefix) {
            return Box::pin(async move {
                inner.ready().await.map_err(Into::into)?;
                inner.call(request).await.map_err(Into::into)
            });
        }
        let config = self.config;
        Box::pin(async move {
            let compressed_allowed = request
                .headers()
                .get("grpc-encoding")
                .is_some_and(|encoding| encoding != "identity");
            let (parts, body) = request.into_parts();
            let checker = FrameChecker::new(config.max_message_bytes, compressed_allowed);
            let read = tokio::time::timeout(config.body_timeout, read_checked(body, checker));
            let bytes = match read.await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(Box::new(RequestBodyTimedOut {
                        limit: config.body_timeout,
                    }) as BoxError);
                }
            };
            let request = http::Request::from_parts(parts, TonicBody::new(Full::new(bytes)));
            inner.ready().await.map_err(Into::into)?;
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// The whole body, checked as it arrives (so that a bad prefix fails at once, not at the end).
async fn read_checked(mut body: TonicBody, mut checker: FrameChecker) -> Result<Bytes, BoxError> {
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BoxError::from)?;
        if let Some(data) = frame.data_ref() {
            checker.feed(data).map_err(framing)?;
            bytes.extend_from_slice(data);
        }
    }
    checker.finish().map_err(framing)?;
    Ok(bytes.freeze())
}

fn framing(error: FramingError) -> BoxError {
    Box::new(status_for_framing(&error))
}

/// The framing state of one request body: where the next byte falls.
#[derive(Debug)]
struct FrameChecker {
    max_message_bytes: usize,
    compressed_allowed: bool,
    header: [u8; 5],
    header_filled: usize,
    /// Bytes of the current message still to come.
    payload_left: usize,
    /// The current message's declared length.
    payload_len: usize,
    messages: usize,
}

impl FrameChecker {
    fn new(max_message_bytes: usize, compressed_allowed: bool) -> Self {
        Self {
            max_message_bytes,
            compressed_allowed,
            header: [0; 5],
            header_filled: 0,
            payload_left: 0,
            payload_len: 0,
            messages: 0,
        }
    }

    /// Checks the next chunk of the body.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), FramingError> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let taken = self.payload_left.min(data.len());
                self.payload_left -= taken;
                data = &data[taken..];
                continue;
            }
            let taken = (5 - self.header_filled).min(data.len());
            self.header[self.header_filled..self.header_filled + taken]
                .copy_from_slice(&data[..taken]);
            self.header_filled += taken;
            data = &data[taken..];
            if self.header_filled == 5 {
                self.header_filled = 0;
                self.start_message()?;
            }
        }
        Ok(())
    }

    /// A message's 5-byte prefix is complete.
    fn start_message(&mut self) -> Result<(), FramingError> {
        if self.messages > 0 {
            return Err(FramingError::SeveralMessages);
        }
        let flag = self.header[0];
        match flag {
            0 => {}
            1 if self.compressed_allowed => {}
            1 => return Err(FramingError::CompressedWithoutEncoding),
            other => return Err(FramingError::InvalidFlag(other)),
        }
        let declared = u32::from_be_bytes([
            self.header[1],
            self.header[2],
            self.header[3],
            self.header[4],
        ]) as usize;
        if declared > self.max_message_bytes {
            return Err(FramingError::TooLarge {
                declared,
                limit: self.max_message_bytes,
            });
        }
        self.messages += 1;
        self.payload_len = declared;
        self.payload_left = declared;
        Ok(())
    }

    /// The body ended.
    fn finish(&self) -> Result<(), FramingError> {
        if self.header_filled > 0 {
            return Err(FramingError::TruncatedPrefix {
                got: self.header_filled,
            });
        }
        if self.payload_left > 0 {
            return Err(FramingError::TruncatedMessage {
                got: self.payload_len - self.payload_left,
                declared: self.payload_len,
            });
        }
        if self.messages == 0 {
            return Err(FramingError::NoMessage);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Feeds `body` in chunks of `chunk` bytes, then ends it.
    fn check(body: &[u8], chunk: usize, compressed_allowed: bool) -> Result<(), FramingError> {
        let mut checker = FrameChecker::new(16, compressed_allowed);
        for piece in body.chunks(chunk) {
            checker.feed(piece)?;
        }
        checker.finish()
    }

    #[test]
    fn one_message_passes_in_any_chunking() {
        let body = frame(0, b"hello");
        for chunk in 1..=body.len() {
            assert_eq!(check(&body, chunk, false), Ok(()), "chunks of {chunk}");
        }
        assert_eq!(check(&frame(0, b""), 1, false), Ok(()));
        assert_eq!(check(&frame(1, b"zz"), 3, true), Ok(()));
    }

    #[test]
    fn a_second_message_is_refused_however_it_arrives() {
        let mut body = frame(0, b"one");
        body.extend(frame(0, b"two"));
        for chunk in 1..=body.len() {
            assert_eq!(
                check(&body, chunk, false),
                Err(FramingError::SeveralMessages)
            );
        }
    }

    #[test]
    fn bad_prefixes_are_named() {
        assert_eq!(
            check(&frame(7, b"x"), 64, false),
            Err(FramingError::InvalidFlag(7))
        );
        assert_eq!(
            check(&frame(1, b"x"), 64, false),
            Err(FramingError::CompressedWithoutEncoding)
        );
        let mut huge = vec![0];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            check(&huge, 64, false),
            Err(FramingError::TooLarge {
                declared: u32::MAX as usize,
                limit: 16
            })
        );
    }

    #[test]
    fn truncation_and_emptiness_are_named() {
        assert_eq!(check(&[], 1, false), Err(FramingError::NoMessage));
        assert_eq!(
            check(&[0, 0, 0], 1, false),
            Err(FramingError::TruncatedPrefix { got: 3 })
        );
        let mut short = frame(0, b"hello");
        short.truncate(7);
        assert_eq!(
            check(&short, 2, false),
            Err(FramingError::TruncatedMessage {
                got: 2,
                declared: 5
            })
        );
    }
}

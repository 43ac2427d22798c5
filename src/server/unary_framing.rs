//! Checks the gRPC framing of unary requests as their bodies stream in: one message, a valid
//! compressed-flag, a declared length within the limit, no truncation. A malformed body gets
//! INVALID_ARGUMENT (RESOURCE_EXHAUSTED when it declares too large a message) saying what is
//! wrong, where tonic would answer INTERNAL; and a unary call carrying a second message is
//! refused before its handler runs, instead of being answered from its first.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame};
use tonic::{Status, body::Body as TonicBody};
use tower::{Layer, Service};

use crate::error::{FramingError, status_for_framing};

/// Guards the request bodies of the calls whose path starts with `prefix` (unary methods only).
#[derive(Clone, Copy, Debug)]
pub struct UnaryFramingLayer {
    prefix: &'static str,
    max_message_bytes: usize,
}

impl UnaryFramingLayer {
    /// Guards the calls under `prefix` (e.g. `/task.Task/`), whose messages may be up to
    /// `max_message_bytes` long.
    pub fn new(prefix: &'static str, max_message_bytes: usize) -> Self {
        Self {
            prefix,
            max_message_bytes,
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
    S: Service<http::Request<TonicBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<TonicBody>) -> Self::Future {
        if !request.uri().path().starts_with(self.config.prefix) {
            return self.inner.call(request);
        }
        let compressed_allowed = request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|encoding| encoding != "identity");
        let (parts, body) = request.into_parts();
        let checker = FrameChecker::new(self.config.max_message_bytes, compressed_allowed);
        let body = TonicBody::new(CheckedBody {
            inner: body,
            checker,
            finished: false,
        });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with the framing error's status at the first bad byte.
    struct CheckedBody {
        #[pin]
        inner: TonicBody,
        checker: FrameChecker,
        finished: bool,
    }
}

impl Body for CheckedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        let checked = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) => this.checker.feed(data).map(|()| frame),
                None => Ok(frame),
            },
            Some(Err(status)) => return Poll::Ready(Some(Err(status))),
            None => match this.checker.finish() {
                Ok(()) => {
                    *this.finished = true;
                    return Poll::Ready(None);
                }
                Err(error) => Err(error),
            },
        };
        Poll::Ready(Some(checked.map_err(|error| {
            *this.finished = true;
            status_for_framing(&error)
        })))
    }

    fn is_end_stream(&self) -> bool {
        // Never true before the end was seen: an empty body must still be checked.
        self.finished
    }
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

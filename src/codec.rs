//! The protobuf codec of the served API: prost's, except that a message that does not decode is
//! INVALID_ARGUMENT (bad input), not the INTERNAL that gRPC's default codec answers.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

/// The codec `build.rs` names for `task.proto`'s services.
#[derive(Debug, Clone, Copy)]
pub struct TaskCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for TaskCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for TaskCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = TaskDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        TaskDecoder(PhantomData)
    }
}

/// Decodes `U`; a failure names the message type and prost's reason.
#[derive(Debug)]
pub struct TaskDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for TaskDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_message(buf).map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

/// Buffers that start small: the API's messages are a few hundred bytes, and an open WatchTask
/// stream holds its encode buffer for as long as it lasts (tonic's default is 8 KiB each). They
/// grow as a message needs (a ListTasks page).
fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// Decodes one `U` from a whole message's bytes.
fn decode_message<U: Message + Default>(buf: impl prost::bytes::Buf) -> Result<U, Status> {
    U::decode(buf)
        .map_err(|error| crate::error::undecodable_message(short_type_name::<U>(), &error))
}

/// `CreateTaskRequest` rather than `task_service::proto::task::CreateTaskRequest`.
fn short_type_name<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::proto::task::CreateTaskRequest;

    fn decode(bytes: &[u8]) -> Result<CreateTaskRequest, Status> {
        decode_message(bytes)
    }

    #[test]
    fn a_valid_message_decodes() {
        let message = CreateTaskRequest {
            original_file_key: "a/original.mp4".into(),
            request_id: "retry-1".into(),
        };
        assert_eq!(decode(&message.encode_to_vec()).unwrap(), message);
    }

    #[test]
    fn invalid_utf8_in_a_string_is_invalid_argument_naming_the_type() {
        // Field 1, length-delimited, 2 bytes that are not UTF-8.
        let status = decode(&[0x0a, 0x02, 0xff, 0xfe]).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("CreateTaskRequest"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_truncated_field_is_invalid_argument() {
        let status = decode(&[0x0a, 0x10, b'a']).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

//! HTTP/2 written frame by frame, for clients no library would be: ones that ignore the
//! server's stream limit, never read, or reset streams as fast as they open them.

use bytes::{BufMut, BytesMut};

/// The client preface and an initial SETTINGS frame (with `initial_window`, 0: the server may
/// send no response data at all).
pub fn preface(initial_window: u32) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = BytesMut::new();
    settings.put_u16(0x4); // SETTINGS_INITIAL_WINDOW_SIZE
    settings.put_u32(initial_window);
    frame(&mut out, 0x4, 0, 0, &settings);
    out
}

/// A HEADERS frame (END_HEADERS, END_STREAM if `end`) for a gRPC call of `path`.
pub fn headers(out: &mut Vec<u8>, stream: u32, path: &str, end: bool) {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        literal(&mut block, name, value);
    }
    let flags = 0x4 | if end { 0x1 } else { 0 };
    frame(out, 0x1, flags, stream, &block);
}

/// A DATA frame.
pub fn data(out: &mut Vec<u8>, stream: u32, payload: &[u8], end: bool) {
    frame(out, 0x0, if end { 0x1 } else { 0 }, stream, payload);
}

/// RST_STREAM with CANCEL.
pub fn reset(out: &mut Vec<u8>, stream: u32) {
    frame(out, 0x3, 0, stream, &0x8u32.to_be_bytes());
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK: a literal header field without indexing, new name, no Huffman coding.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    string(out, name.as_bytes());
    string(out, value.as_bytes());
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    // A 7-bit prefix integer (RFC 7541, 5.1), then the octets.
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}

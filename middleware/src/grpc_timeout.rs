//! Parse and encode the `grpc-timeout` header as the gRPC over HTTP/2 spec defines it.
//!
//! The spec: `Timeout → "grpc-timeout" TimeoutValue TimeoutUnit`, where `TimeoutValue`
//! is at most 8 ASCII digits and `TimeoutUnit` is one of `H` (hours), `M` (minutes),
//! `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n` (nanoseconds).

use std::time::Duration;

use http::HeaderValue;

/// The name of the header, for callers that read or write it.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The largest `TimeoutValue` the spec allows (8 digits).
const MAX_VALUE: u64 = 99_999_999;

/// Units from finest to coarsest, with their length in nanoseconds.
const UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3_600 * 1_000_000_000),
];

/// Parses a `grpc-timeout` header value.
///
/// Returns `None` for anything the spec does not allow: no digits, more than 8 digits,
/// a sign, whitespace, or a unit other than `H M S m u n`. A value of zero is accepted
/// (it means the deadline has already passed); gRPC implementations send and accept it.
pub fn parse(header: &HeaderValue) -> Option<Duration> {
    let bytes = header.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits, so this cannot overflow.
    let value = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    let duration = match unit {
        b'H' => Duration::from_secs(value * 3_600),
        b'M' => Duration::from_secs(value * 60),
        b'S' => Duration::from_secs(value),
        b'm' => Duration::from_millis(value),
        b'u' => Duration::from_micros(value),
        b'n' => Duration::from_nanos(value),
        _ => return None,
    };
    Some(duration)
}

/// Encodes a duration as a `grpc-timeout` header value.
///
/// If some unit expresses `d` exactly within 8 digits, the coarsest such unit is used,
/// which gives the shortest text (`1S`, not `1000m`). Otherwise the finest unit that
/// fits in 8 digits is used, rounding up, so the peer never sees a deadline earlier
/// than ours. Durations beyond the largest encodable value (99 999 999 hours, about
/// 11 400 years) are clamped to it.
pub fn encode(d: Duration) -> HeaderValue {
    let nanos = d.as_nanos();
    let mut exact: Option<(u64, u8)> = None;
    let mut rounded: Option<(u64, u8)> = None;
    for (unit, len) in UNITS {
        let value = nanos.div_ceil(len);
        if value > u128::from(MAX_VALUE) {
            continue;
        }
        // Fits in 8 digits, so fits in u64.
        let value = value as u64;
        // A coarser exact unit is preferred only if it is strictly shorter, so zero
        // stays `0n` rather than `0H`.
        let shorter = exact.is_none_or(|(best, _)| digits(value) < digits(best));
        if nanos.is_multiple_of(len) && shorter {
            exact = Some((value, unit));
        }
        rounded.get_or_insert((value, unit));
    }
    let (value, unit) = exact.or(rounded).unwrap_or((MAX_VALUE, b'H'));
    let text = format!("{value}{}", unit as char);
    HeaderValue::from_str(&text).expect("digits and an ASCII unit are a valid header value")
}

fn digits(value: u64) -> u32 {
    value.checked_ilog10().map_or(1, |log| log + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Duration> {
        parse(&HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(p("2H"), Some(Duration::from_secs(7_200)));
        assert_eq!(p("3M"), Some(Duration::from_secs(180)));
        assert_eq!(p("4S"), Some(Duration::from_secs(4)));
        assert_eq!(p("500m"), Some(Duration::from_millis(500)));
        assert_eq!(p("250u"), Some(Duration::from_micros(250)));
        assert_eq!(p("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(p("0m"), Some(Duration::ZERO));
    }

    #[test]
    fn accepts_eight_digits_and_leading_zeros() {
        assert_eq!(
            p("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3_600))
        );
        assert_eq!(p("00000010S"), Some(Duration::from_secs(10)));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "S",
            "m",
            "10",
            "123456789S",
            "10s",
            "10x",
            "-1S",
            "+1S",
            " 1S",
            "1S ",
            "1 S",
            "1.5S",
            "1SS",
            "1Sm",
            "１S",
        ] {
            let Ok(value) = HeaderValue::from_str(bad) else {
                continue; // not even a header value
            };
            assert_eq!(parse(&value), None, "{bad:?} must not parse");
        }
        // Non-ASCII bytes are valid in a header value but not in a timeout.
        let opaque = HeaderValue::from_bytes(b"1\xffS").unwrap();
        assert_eq!(parse(&opaque), None);
    }

    #[test]
    fn encodes_exact_values_in_the_coarsest_unit() {
        assert_eq!(encode(Duration::from_secs(1)), "1S");
        assert_eq!(encode(Duration::from_secs(120)), "2M");
        assert_eq!(encode(Duration::from_secs(7_200)), "2H");
        assert_eq!(encode(Duration::from_millis(1_500)), "1500m");
        assert_eq!(encode(Duration::from_micros(1_001)), "1001u");
        assert_eq!(encode(Duration::from_nanos(5)), "5n");
        assert_eq!(encode(Duration::ZERO), "0n");
    }

    #[test]
    fn rounds_up_when_no_unit_is_exact() {
        // 123.456789123 s: too many digits for n and u; m rounds up.
        assert_eq!(encode(Duration::from_nanos(123_456_789_123)), "123457m");
        // 100 000 000 ns needs 9 digits as n but is exactly 100 000 u.
        assert_eq!(encode(Duration::from_nanos(100_000_000)), "100m");
        // 100 000 001 ns: not exact in u or coarser; u rounds up.
        assert_eq!(encode(Duration::from_nanos(100_000_001)), "100001u");
    }

    #[test]
    fn clamps_huge_durations() {
        assert_eq!(encode(Duration::MAX), "99999999H");
    }

    #[test]
    fn encode_then_parse_never_shortens() {
        for nanos in [
            1u64,
            999,
            1_000,
            1_234_567,
            99_999_999,
            100_000_001,
            987_654_321_012,
            86_400_000_000_001,
        ] {
            let d = Duration::from_nanos(nanos);
            let back = parse(&encode(d)).unwrap();
            assert!(back >= d, "{d:?} encoded as {back:?}");
            // Rounding error is below one unit of the chosen (finest fitting) unit,
            // which is at most a millionth of the value for values this size.
            assert!(
                back - d <= d / 10_000 + Duration::from_nanos(1),
                "{d:?} → {back:?}"
            );
        }
    }
}

//! The body every published message carries: its sequence number and send time, as text, padded
//! to the payload size; and reading them back on arrival.

use bytes::{BufMut, Bytes, BytesMut};

use crate::stats::now_ns;

/// The body: `<seq> <send time ns> ` padded with `x` to the payload size. Text, so that both
/// brokers relay it in WebSocket text messages as they would chat messages.
pub(super) fn body(seq: u64, payload: usize, scratch: &mut BytesMut) -> Bytes {
    let mut seq_text = itoa_buf();
    let mut ts_text = itoa_buf();
    scratch.put_slice(fmt_u64(&mut seq_text, seq));
    scratch.put_u8(b' ');
    scratch.put_slice(fmt_u64(&mut ts_text, now_ns()));
    scratch.put_u8(b' ');
    if scratch.len() < payload {
        scratch.put_bytes(b'x', payload - scratch.len());
    }
    scratch.split().freeze()
}

pub(super) fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

pub(super) fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Reads `<seq> <ns> ` back from a body.
pub(super) fn parse_body(body: &[u8]) -> Option<(u64, u64)> {
    let mut fields = body.split(|b| *b == b' ');
    let number = |field: &[u8]| -> Option<u64> {
        if field.is_empty() || field.len() > 20 {
            return None;
        }
        field.iter().try_fold(0u64, |acc, digit| {
            digit
                .is_ascii_digit()
                .then(|| acc.wrapping_mul(10).wrapping_add(u64::from(digit - b'0')))
        })
    };
    let seq = number(fields.next()?)?;
    let ts = number(fields.next()?)?;
    Some((seq, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_and_pads() {
        let mut scratch = BytesMut::new();
        let body = body(42, 100, &mut scratch);
        assert_eq!(body.len(), 100);
        let (seq, ts) = parse_body(&body).unwrap();
        assert_eq!(seq, 42);
        assert!(ts <= now_ns());
    }

    #[test]
    fn short_payload_keeps_the_header() {
        let mut scratch = BytesMut::new();
        let body = body(7, 1, &mut scratch);
        assert_eq!(parse_body(&body).map(|(s, _)| s), Some(7));
    }

    #[test]
    fn garbage_body_is_refused() {
        assert_eq!(parse_body(b"hello world"), None);
        assert_eq!(parse_body(b""), None);
    }
}

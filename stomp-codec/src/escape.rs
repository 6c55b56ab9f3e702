//! Header value escaping (STOMP 1.1 and 1.2 § "Value Encoding").

use bytes::{BufMut, BytesMut};

use crate::frame::Version;

/// Undoes the escaping of `raw`; `None` when it holds an escape the version does not define.
///
/// 1.2 defines `\r`, `\n`, `\c` and `\\`; 1.1 the same without `\r`.
pub(crate) fn unescape(raw: &[u8], version: Version) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        out.push(match bytes.next()? {
            b'n' => b'\n',
            b'c' => b':',
            b'\\' => b'\\',
            b'r' if version == Version::V1_2 => b'\r',
            _ => return None,
        });
    }
    Some(out)
}

/// Whether `byte` must be escaped in a header of this version.
#[inline]
fn needs_escape(byte: u8, version: Version) -> bool {
    match byte {
        b'\n' | b':' | b'\\' => true,
        b'\r' => version == Version::V1_2,
        _ => false,
    }
}

/// Writes `text` as a header name or value.
///
/// `escaped` is false for CONNECT/CONNECTED and for STOMP 1.0, which have no escaping; there an
/// LF inside a value would end the header early, so it is written as a space instead: the frame
/// stays well-formed whatever the value holds. A CR is written as it is (see [`put_eol`]).
#[inline]
pub(crate) fn put_header_text(dst: &mut BytesMut, text: &str, version: Version, escaped: bool) {
    let bytes = text.as_bytes();
    if !escaped || version == Version::V1_0 {
        if memchr::memchr(b'\n', bytes).is_some() {
            dst.extend(bytes.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        } else {
            dst.put_slice(bytes);
        }
        return;
    }
    if !bytes.iter().any(|&b| needs_escape(b, version)) {
        dst.put_slice(bytes);
        return;
    }
    for &byte in bytes {
        match byte {
            b'\n' => dst.put_slice(b"\\n"),
            b'\r' if version == Version::V1_2 => dst.put_slice(b"\\r"),
            b':' => dst.put_slice(b"\\c"),
            b'\\' => dst.put_slice(b"\\\\"),
            other => dst.put_u8(other),
        }
    }
}

/// Ends a header line.
///
/// Where CR is not escaped (1.0, 1.1, CONNECT), a value may end in a raw CR, which a reader would
/// take for the first half of a CRLF EOL and drop. Ending that line with CRLF keeps it: the
/// reader strips exactly one CR before the LF.
#[inline]
pub(crate) fn put_eol(dst: &mut BytesMut) {
    if dst.last() == Some(&b'\r') {
        dst.put_slice(b"\r\n");
    } else {
        dst.put_u8(b'\n');
    }
}

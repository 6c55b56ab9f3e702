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

/// Whether any byte of `bytes` must be escaped in a header of this version.
///
/// Header text rarely needs escaping, so this is the encoder's hot loop, and most names and
/// values are short. A byte-by-byte scan (or `memchr`, which falls back to one below a vector's
/// width) costs several instructions per byte, and copying a short string into a padded buffer
/// stalls on the store. So the bytes are read in place, as 16-byte blocks the compiler
/// vectorises, or as two overlapping words tested eight bytes at a time.
#[inline]
fn needs_escape(bytes: &[u8], version: Version) -> bool {
    // Where CR needs no escape, test for LF twice instead of adding a condition.
    let cr = if version == Version::V1_2 {
        b'\r'
    } else {
        b'\n'
    };
    let len = bytes.len();
    match len {
        0..4 => bytes
            .iter()
            .any(|&b| b == b'\n' || b == b':' || b == b'\\' || b == cr),
        4..8 => {
            let head = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"));
            let tail = u32::from_ne_bytes(bytes[len - 4..].try_into().expect("4 bytes"));
            word_needs_escape(u64::from(head) | (u64::from(tail) << 32), cr)
        }
        8..BLOCK => {
            let head = u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"));
            let tail = u64::from_ne_bytes(bytes[len - 8..].try_into().expect("8 bytes"));
            word_needs_escape(head, cr) || word_needs_escape(tail, cr)
        }
        _ => {
            let mut blocks = bytes.chunks_exact(BLOCK);
            blocks.any(|block| block_needs_escape(block.try_into().expect("a block"), cr))
                // The last, partial block: the final bytes, overlapping some already tested.
                || (!blocks.remainder().is_empty()
                    && block_needs_escape(bytes[len - BLOCK..].try_into().expect("a block"), cr))
        }
    }
}

const BLOCK: usize = 16;

#[inline]
fn block_needs_escape(block: &[u8; BLOCK], cr: u8) -> bool {
    // An OR over u8 flags (not bools, no early exit) is what the vectoriser recognises.
    let mut found = 0u8;
    for &b in block {
        found |=
            u8::from(b == b'\n') | u8::from(b == b':') | u8::from(b == b'\\') | u8::from(b == cr);
    }
    found != 0
}

/// The same test on the eight bytes of `word`, with the "has a zero byte" bit trick applied to
/// `word` XOR each special byte.
#[inline]
fn word_needs_escape(word: u64, cr: u8) -> bool {
    const fn splat(byte: u8) -> u64 {
        u64::from_ne_bytes([byte; 8])
    }
    let zero_bytes = |x: u64| x.wrapping_sub(splat(1)) & !x;
    let found = zero_bytes(word ^ splat(b'\n'))
        | zero_bytes(word ^ splat(b':'))
        | zero_bytes(word ^ splat(b'\\'))
        | zero_bytes(word ^ splat(cr));
    found & splat(0x80) != 0
}

/// Whether header lines written as they are (`name:value` and an EOL each, `count` of them) are
/// already correct for the version: no name or value held a character that needs escaping, or,
/// where nothing is escaped, an LF.
///
/// The encoder writes a frame's header lines unchecked and asks this once, instead of testing
/// each name and value before writing it: one vectorised pass over the whole header section
/// costs a fraction of a dozen short scans. Every `:` and LF a name or value adds shows up as a
/// count above the number of lines.
pub(crate) fn lines_need_no_escape(
    lines: &[u8],
    count: usize,
    version: Version,
    escaped: bool,
) -> bool {
    // In 1.1 CR needs no escape: test for backslash twice instead of adding a condition.
    let other = if version == Version::V1_2 {
        b'\r'
    } else {
        b'\\'
    };
    let (mut colons, mut lfs, mut others) = (0usize, 0usize, 0u8);
    // u8 counters fill a vector register 16 at a time; 255 bytes cannot overflow them.
    for chunk in lines.chunks(255) {
        let (mut c, mut l, mut o) = (0u8, 0u8, 0u8);
        for &b in chunk {
            c += u8::from(b == b':');
            l += u8::from(b == b'\n');
            o |= u8::from(b == b'\\') | u8::from(b == other);
        }
        colons += usize::from(c);
        lfs += usize::from(l);
        others |= o;
    }
    if !escaped || version == Version::V1_0 {
        return lfs == count;
    }
    lfs == count && colons == count && others == 0
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
        put_unescaped(dst, bytes);
    } else if needs_escape(bytes, version) {
        put_escaped(dst, bytes, version);
    } else {
        dst.put_slice(bytes);
    }
}

// The rare paths live out of line so that the common one inlines into the encoder's loop
// without their stack frame.
#[cold]
#[inline(never)]
fn put_escaped(dst: &mut BytesMut, bytes: &[u8], version: Version) {
    dst.reserve(bytes.len() + 8);
    let mut copied = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'\n' => b"\\n",
            b'\r' if version == Version::V1_2 => b"\\r",
            b':' => b"\\c",
            b'\\' => b"\\\\",
            _ => continue,
        };
        dst.put_slice(&bytes[copied..at]);
        dst.put_slice(escape);
        copied = at + 1;
    }
    dst.put_slice(&bytes[copied..]);
}

#[inline(never)]
fn put_unescaped(dst: &mut BytesMut, bytes: &[u8]) {
    if memchr::memchr(b'\n', bytes).is_some() {
        dst.extend(bytes.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
    } else {
        dst.put_slice(bytes);
    }
}

/// Ends a header line whose value was written from `value`.
///
/// Where CR is not escaped (1.0, 1.1, CONNECT), a value may end in a raw CR, which a reader would
/// take for the first half of a CRLF EOL and drop. Ending that line with CRLF keeps it: the
/// reader strips exactly one CR before the LF. The test reads `value`, not the bytes just
/// written to `dst`: reading back the tail of a fresh copy stalls on the store.
#[inline]
pub(crate) fn put_eol(dst: &mut BytesMut, value: &str, version: Version, escaped: bool) {
    let cr_escaped = escaped && version == Version::V1_2;
    if value.ends_with('\r') && !cr_escaped {
        dst.put_slice(b"\r\n");
    } else {
        dst.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    fn specials(version: Version) -> &'static [u8] {
        if version == Version::V1_2 {
            b"\n:\\\r"
        } else {
            b"\n:\\"
        }
    }

    /// Every length class of the word and block tests, with each special byte at every position.
    #[test]
    fn needs_escape_finds_a_special_byte_anywhere() {
        for version in VERSIONS {
            for len in 0..70 {
                let plain = vec![b'a'; len];
                assert!(!needs_escape(&plain, version), "len {len}");
                for at in 0..len {
                    for &special in specials(version) {
                        let mut text = plain.clone();
                        text[at] = special;
                        assert!(needs_escape(&text, version), "{special} at {at} of {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn needs_escape_ignores_bytes_next_to_the_special_ones() {
        // Neighbours of the special bytes, and bytes whose high bit would upset a careless
        // word test.
        let near: Vec<u8> = [
            0x09, 0x0b, 0x0c, 0x0e, 0x39, 0x3b, 0x5b, 0x5d, 0x80, 0x8a, 0xba, 0xdc, 0xff,
        ]
        .repeat(6);
        for len in 0..near.len() {
            assert!(!needs_escape(&near[..len], Version::V1_2), "len {len}");
        }
        assert!(!needs_escape(b"a\rb", Version::V1_1));
    }

    #[test]
    fn lines_need_no_escape_counts_separators_across_chunks() {
        let line = |value: &str| format!("name:{value}\n");
        let long = "x".repeat(600);
        let plain = format!("{}{}", line(&long), line("v"));
        assert!(lines_need_no_escape(
            plain.as_bytes(),
            2,
            Version::V1_2,
            true
        ));
        for special in [":", "\n", "\\", "\r"] {
            let mut value = long.clone();
            value.insert_str(300, special);
            let lines = format!("{}{}", line(&value), line("v"));
            assert!(
                !lines_need_no_escape(lines.as_bytes(), 2, Version::V1_2, true),
                "{special:?}"
            );
        }
        let with_cr = format!("{}{}", line("a\rb"), line("v"));
        assert!(lines_need_no_escape(
            with_cr.as_bytes(),
            2,
            Version::V1_1,
            true
        ));
        // Unescaped lines only care about LF.
        let with_colon = format!("{}{}", line("a:b\\c"), line("v"));
        assert!(lines_need_no_escape(
            with_colon.as_bytes(),
            2,
            Version::V1_2,
            false
        ));
        let with_lf = format!("{}{}", line("a\nb"), line("v"));
        assert!(!lines_need_no_escape(
            with_lf.as_bytes(),
            2,
            Version::V1_0,
            true
        ));
    }
}

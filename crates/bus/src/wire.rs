//! Confluent wire format: byte 0 is the magic 0, bytes 1..5 the schema id
//! (big endian), the rest one Avro binary datum. Any Confluent-compatible
//! client in any language reads and writes exactly this.

pub const MAGIC_BYTE: u8 = 0;
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message has {0} bytes, fewer than the 5-byte Confluent header")]
    TooShort(usize),
    #[error("magic byte is {0}, expected 0 (not Confluent-framed Avro)")]
    BadMagic(u8),
}

/// Splits a framed message into its schema id and Avro datum.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::TooShort(bytes.len()));
    }
    if bytes[0] != MAGIC_BYTE {
        return Err(FrameError::BadMagic(bytes[0]));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

/// Prefixes an Avro datum with the Confluent header.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_unframes() {
        let framed = frame(258, b"abc");
        assert_eq!(framed, [0, 0, 0, 1, 2, b'a', b'b', b'c']);
        assert_eq!(unframe(&framed), Ok((258, &b"abc"[..])));
    }

    #[test]
    fn rejects_short_and_foreign_bytes() {
        assert_eq!(unframe(&[0, 1]), Err(FrameError::TooShort(2)));
        assert_eq!(unframe(b"{\"json\":1}"), Err(FrameError::BadMagic(b'{')));
    }
}

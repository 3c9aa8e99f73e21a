//! Just enough DER to take the RSA key out of a SubjectPublicKeyInfo, the
//! form vendors publish (`-----BEGIN PUBLIC KEY-----`). Every read is bounds
//! checked: key material comes from configuration, but no input may panic.

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
/// 1.2.840.113549.1.1.1 (rsaEncryption), DER-encoded OID body.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// One TLV: returns (tag, contents, rest).
fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The PKCS#1 `RSAPublicKey` inside an RSA SubjectPublicKeyInfo.
pub(super) fn rsa_public_key_from_spki(spki: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = read(spki)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, algorithm, rest) = read(body)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, oid, _) = read(algorithm)?;
    if oid != RSA_ENCRYPTION {
        return None;
    }
    let (tag, bits, _) = read(rest)?;
    if tag != BIT_STRING {
        return None;
    }
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then_some(key)
}

/// The base64 body of the first PEM block labelled `label`.
pub(super) fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_panics_on_truncations_of_a_valid_key() {
        let spki = pem_block(include_str!("../../tests/fixtures/webhooks/wise-dev-public.pem"), "PUBLIC KEY").expect("pem");
        assert!(rsa_public_key_from_spki(&spki).is_some());
        for cut in 0..spki.len() {
            let _ = rsa_public_key_from_spki(&spki[..cut]);
        }
        assert_eq!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(read(&[0x30, 0x82, 0xff]), None);
    }
}

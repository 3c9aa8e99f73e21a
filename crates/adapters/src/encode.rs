//! Percent-encoding of our identifiers where vendors put them in a URL path
//! (Sumsub's `-;externalUserId=<key>`, SEON's label `/{transaction_id}`):
//! keys are free text from core systems and must not change the route.

/// Encodes everything but RFC 3986 unreserved characters.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_plain_keys_and_escapes_the_rest() {
        assert_eq!(super::path_segment("kyc-1.a_b~"), "kyc-1.a_b~");
        assert_eq!(super::path_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }
}

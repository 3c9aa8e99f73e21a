//! Small pieces every scheme and vendor mapping shares: HMAC comparison,
//! digests, header access, RFC 3339 times, derived event ids.

use super::Refusal;
use reqwest::header::HeaderMap;

/// True if any `key`'s HMAC-SHA256 over the concatenated `parts` equals any
/// candidate signature, compared in constant time. One MAC per key, whatever
/// the number of candidates; ring's SHA-256 (assembly) rather than a portable
/// one: it was a quarter of the ingester's instructions.
pub(crate) fn hmac_matches(keys: &[&[u8]], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    hmac_matches_with(ring::hmac::HMAC_SHA256, keys, parts, candidates)
}

/// [`hmac_matches`] under another hash (Sumsub lets the sender pick).
pub(crate) fn hmac_matches_with(alg: ring::hmac::Algorithm, keys: &[&[u8]], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    use subtle::ConstantTimeEq;
    let mut matched = subtle::Choice::from(0u8);
    for key in keys {
        let mut ctx = ring::hmac::Context::with_key(&ring::hmac::Key::new(alg, key));
        for part in parts {
            ctx.update(part);
        }
        let tag = ctx.sign();
        for candidate in candidates {
            matched |= tag.as_ref().ct_eq(candidate);
        }
    }
    matched.into()
}

/// Hex SHA-256 of a callback body (ring's SHA-256, see [`hmac_matches`]).
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, body))
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Refusal> {
    headers
        .get(name)
        .ok_or(Refusal::MissingHeader(name))?
        .to_str()
        .map_err(|_| Refusal::MalformedHeader(name))
}

/// Parses an RFC 3339 UTC timestamp (`2024-05-01T12:00:00Z`, optional
/// fraction and numeric offset) into Unix ms; vendors' bodies carry these.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = first3.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset_s) * 1000 + millis)
}

/// A deterministic event id for vendors whose callbacks carry none (Wise):
/// the same state change delivered twice hashes to the same id.
pub(crate) fn derived_event_id(parts: &[&str]) -> String {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        h.update(&(p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    format!("sha256:{}", hex::encode(&h.finish().as_ref()[..16]))
}

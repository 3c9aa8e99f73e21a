//! Small helpers shared by the vendor modules.

use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Fingerprint of canonicalised request parameters. `DefaultHasher::new()`
/// has fixed keys, so equal parameters always collide as intended.
pub(crate) fn fingerprint<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Work a vendor finishes once it has accepted a request, whether or not
/// the client is still there: a client that times out or disconnects
/// mid-request (the handler future is dropped) does not un-send it. Real
/// vendors behave so, and a simulator that cancelled would hide every
/// double execution that starts with a timeout.
pub(crate) struct Accepted<F: FnOnce() -> R, R>(Option<F>);

impl<F: FnOnce() -> R, R> Accepted<F, R> {
    pub(crate) fn new(work: F) -> Self {
        Self(Some(work))
    }

    /// Does the work now and returns its result.
    pub(crate) fn finish(mut self) -> Option<R> {
        self.0.take().map(|work| work())
    }
}

impl<F: FnOnce() -> R, R> Drop for Accepted<F, R> {
    fn drop(&mut self) {
        if let Some(work) = self.0.take() {
            work();
        }
    }
}

/// The vendor's side of an admitted request: waits its latency, executes
/// (even if the client gave up meanwhile, see [`Accepted`]), then holds the
/// answer for `hang` (executed, and slow to say so).
pub(crate) async fn accept<R>(latency: Duration, hang: Option<Duration>, work: impl FnOnce() -> R) -> Option<R> {
    let accepted = Accepted::new(work);
    pause(latency).await;
    let done = accepted.finish();
    if let Some(h) = hang {
        pause(h).await;
    }
    done
}

pub(crate) async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// A JSON reply from pre-rendered bytes plus extra headers.
pub(crate) fn json_reply(status: StatusCode, body: Bytes, extra: &[(HeaderName, HeaderValue)]) -> Response {
    let mut headers = HeaderMap::with_capacity(extra.len() + 1);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in extra {
        headers.insert(k.clone(), v.clone());
    }
    (status, headers, body).into_response()
}

pub(crate) fn to_bytes<T: serde::Serialize + ?Sized>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A random id body: `n` uppercase alphanumerics. From the thread's
/// userspace generator: a v4 UUID per id meant a `getrandom` system call,
/// two per simulated payout.
pub(crate) fn random_id(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// `2024-04-22T12:55:18Z` from Unix milliseconds, without a date crate.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Unix milliseconds from an ISO 8601 date-time as Adyen's list filters take
/// it: `2024-04-22T12:55:18Z`, optional fraction, `Z` or `±HH:MM` offset.
/// `None` for anything else, so a bad filter is refused, never guessed.
pub(crate) fn parse_iso8601(s: &str) -> Option<i64> {
    let num = |r: &str| -> Option<i64> { r.bytes().all(|b| b.is_ascii_digit()).then(|| r.parse().ok()).flatten() };
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (c, sign * (num(oh)? * 3600 + num(om)? * 60))
    };
    let clock = clock.split_once('.').map_or(clock, |(whole, frac)| if num(frac).is_some() { whole } else { "" });
    let mut t = clock.splitn(3, ':');
    let (hh, mm, ss) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil, the inverse of `iso8601` above.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss - offset_secs) * 1000)
}

/// Header value as `&str`, or `None` if absent or not visible ASCII.
pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_known_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso8601(1_713_790_518_000), "2024-04-22T12:55:18Z");
    }

    #[test]
    fn parse_iso8601_round_trips_and_honours_offsets() {
        assert_eq!(super::parse_iso8601("2024-04-22T12:55:18Z"), Some(1_713_790_518_000));
        assert_eq!(super::parse_iso8601("2024-04-22T14:55:18.123+02:00"), Some(1_713_790_518_000));
        assert_eq!(super::parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(super::parse_iso8601("2024-02-29T00:00:00Z").map(super::iso8601).as_deref(), Some("2024-02-29T00:00:00Z"));
        assert_eq!(super::parse_iso8601("yesterday"), None);
        assert_eq!(super::parse_iso8601("2024-13-01T00:00:00Z"), None);
    }
}

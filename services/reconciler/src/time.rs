//! Instants on the command line: Unix ms, RFC 3339 in UTC, `now`, or an
//! offset before now (`-24h`).

use switchyard_routing::catalog::parse_duration;

pub(crate) fn parse_instant(s: &str) -> Result<i64, String> {
    let now = switchyard_canonical::now_ms();
    if s == "now" {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d = parse_duration(ago).ok_or_else(|| format!("{s:?}: expected -<n><unit>, e.g. -24h"))?;
        return Ok(now - d.as_millis() as i64);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|e| format!("{s:?}: {e}"));
    }
    rfc3339_utc(s).ok_or_else(|| format!("{s:?}: expected Unix ms, now, -24h or YYYY-MM-DDTHH:MM:SSZ"))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    Some(((days_from_civil(y, m, day) * 24 + h) * 60 + min) * 60_000 + sec * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_every_accepted_form() {
        assert_eq!(parse_instant("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_instant("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_instant("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Ok(0));
        let ago = parse_instant("-1h").expect("relative");
        assert!((switchyard_canonical::now_ms() - ago - 3_600_000).abs() < 5_000);
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2023-13-01T00:00:00Z").is_err());
    }
}

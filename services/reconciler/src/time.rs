//! Instants on the command line: Unix ms, RFC 3339, `now`, or an
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
    // The webhook adapters' RFC 3339 reader: UTC or a numeric offset.
    switchyard_adapters::webhooks::rfc3339_ms(s).ok_or_else(|| format!("{s:?}: expected Unix ms, now, -24h or YYYY-MM-DDTHH:MM:SSZ"))
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

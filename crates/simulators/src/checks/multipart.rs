//! Reads `multipart/form-data` bodies (document uploads) without a crate:
//! the simulator only needs each part's name and bytes.

use std::collections::HashMap;

/// Part name -> content. A repeated name keeps the last part.
pub(crate) fn parse(content_type: &str, body: &[u8]) -> Option<HashMap<String, Vec<u8>>> {
    let boundary = content_type.split(';').map(str::trim).find_map(|p| p.strip_prefix("boundary="))?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = HashMap::new();
    let mut rest = body;
    loop {
        let start = find(rest, delimiter.as_bytes())? + delimiter.len();
        rest = &rest[start..];
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let name = head
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("name="))?
            .trim_matches('"')
            .to_owned();
        rest = &rest[head_end + 4..];
        let end = find(rest, format!("\r\n{delimiter}").as_bytes())?;
        parts.insert(name, rest[..end].to_vec());
        rest = &rest[end + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_text_and_file_parts() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"side\"\r\n\r\nfront\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nbytes\r\n--XX--\r\n";
        let parts = super::parse("multipart/form-data; boundary=XX", body).expect("parses");
        assert_eq!(parts["side"], b"front");
        assert_eq!(parts["file"], b"bytes");
        assert!(super::parse("multipart/form-data; boundary=XX", b"garbage").is_none());
    }
}

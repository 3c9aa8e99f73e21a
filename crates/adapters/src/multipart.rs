//! A `multipart/form-data` body built by hand: the KYC vendors take document
//! uploads this way, and one small writer is cheaper than another dependency.

/// Parts in order; text fields and files.
#[derive(Debug, Default)]
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        Self { boundary: format!("switchyard-{}", uuid::Uuid::new_v4().simple()), body: Vec::new() }
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.head(name, None, None);
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn file(mut self, name: &str, filename: &str, content_type: &str, content: &[u8]) -> Self {
        self.head(name, Some(filename), Some(content_type));
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    fn head(&mut self, name: &str, filename: Option<&str>, content_type: Option<&str>) {
        // Quotes would end the parameter early; vendors' names never need them.
        let clean = |s: &str| s.replace(['"', '\r', '\n'], "_");
        self.body.extend_from_slice(format!("--{}\r\nContent-Disposition: form-data; name=\"{}\"", self.boundary, clean(name)).as_bytes());
        if let Some(f) = filename {
            self.body.extend_from_slice(format!("; filename=\"{}\"", clean(f)).as_bytes());
        }
        if let Some(t) = content_type {
            self.body.extend_from_slice(format!("\r\nContent-Type: {t}").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n\r\n");
    }

    /// The `Content-Type` header value and the body.
    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (format!("multipart/form-data; boundary={}", self.boundary), self.body)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parts_are_delimited_and_closed() {
        let (ct, body) = super::Multipart::new().text("side", "front").file("file", "a.jpg", "image/jpeg", b"xx").finish();
        let boundary = ct.trim_start_matches("multipart/form-data; boundary=");
        let text = String::from_utf8(body).expect("ascii");
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"side\"\r\n\r\nfront\r\n")));
        assert!(text.contains("filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}

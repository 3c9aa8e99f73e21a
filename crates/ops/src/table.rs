//! Aligned text tables for people, with colour only on a terminal.
//!
//! Plain ANSI SGR codes, no TUI crate: the output is a string, so the same
//! code prints to a terminal, a pipe or a test assertion. Column widths count
//! characters, which is right for the ASCII and Latin text these tables hold.

use std::io::IsTerminal;

/// How a cell is highlighted when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bad,
    Good,
    Warn,
    Dim,
    Bold,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Bad => Some("31"),
            Style::Good => Some("32"),
            Style::Warn => Some("33"),
            Style::Dim => Some("2"),
            Style::Bold => Some("1"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Self { text: text.into(), style }
    }
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Self {
        Self { text: text.into(), style: Style::Plain }
    }
}

/// Whether stdout should get colour: a terminal, and `NO_COLOR` unset.
pub fn colour_on_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Self {
        Self { headers: headers.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<Cell>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Columns padded to their widest cell and separated by two spaces; the
    /// last column is not padded, so long details do not leave trailing blanks.
    pub fn render(&self, colour: bool) -> String {
        let columns = self.headers.len().max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut widths = vec![0usize; columns];
        for (i, h) in self.headers.iter().enumerate() {
            widths[i] = widths[i].max(h.chars().count());
        }
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(c.text.chars().count());
            }
        }
        let mut out = String::new();
        let header_cells: Vec<Cell> = self.headers.iter().map(|h| Cell::styled(h.clone(), Style::Bold)).collect();
        for row in std::iter::once(&header_cells).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.text.chars().count());
                match (colour, cell.style.code()) {
                    (true, Some(code)) => line.push_str(&format!("\x1b[{code}m{}\x1b[0m", cell.text)),
                    _ => line.push_str(&cell.text),
                }
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `2026-11-25 17:40:05.123` (UTC) for a Unix-ms instant.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{millis:03}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so timestamps need no date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `42s`, `17m`, `3h05m`, `2d04h`: an age at a glance.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_colour_is_optional() {
        let mut t = Table::new(["topic", "depth"]);
        t.row(vec!["a.dlq".into(), Cell::styled("12", Style::Bad)]);
        t.row(vec!["longer.dlq".into(), "3".into()]);
        assert_eq!(t.render(false), "topic       depth\na.dlq       12\nlonger.dlq  3\n");
        let coloured = t.render(true);
        assert!(coloured.contains("\x1b[31m12\x1b[0m"), "{coloured}");
        assert!(coloured.starts_with("\x1b[1mtopic\x1b[0m       "), "{coloured}");
    }

    #[test]
    fn dates_and_ages() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(1_764_092_405_123), "2025-11-25 17:40:05.123");
        assert_eq!(age(59_000), "59s");
        assert_eq!(age(3_723_000), "1h02m");
        assert_eq!(age(2 * 86_400_000 + 3_600_000), "2d01h");
    }
}

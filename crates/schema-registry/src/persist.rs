//! Append-only JSON-lines journal so schema ids survive a restart.
//!
//! Each line is one [`Record`]; replaying them in order rebuilds the state.
//! Ids and versions are written explicitly (rather than re-derived) so that a
//! hand-edited or damaged file is detected instead of silently renumbered.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::level::Level;
use crate::RegistryError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Record {
    Schema {
        id: u32,
        schema: String,
    },
    Version {
        subject: String,
        version: u32,
        id: u32,
    },
    Config {
        subject: Option<String>,
        compatibility: Level,
    },
}

pub(crate) struct Journal {
    file: File,
    /// Length of the file up to the last complete record; a failed append is
    /// truncated back to it so a half-written line never precedes good ones.
    len: u64,
}

impl Journal {
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<(usize, Record)>), RegistryError> {
        let io_err = |source: io::Error| RegistryError::DataFile {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_err)?;

        // A crash mid-append leaves an unterminated last line: drop it, since
        // the client never got a response for that registration.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            tracing::warn!(path = %path.display(), "discarding incomplete last line of schema registry data file");
            file.set_len(complete as u64).map_err(io_err)?;
        }
        let mut records = Vec::new();
        for (index, line) in text[..complete].lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(line).map_err(|e| RegistryError::Corrupt {
                path: path.to_owned(),
                line: index + 1,
                reason: e.to_string(),
            })?;
            records.push((index + 1, record));
        }
        Ok((
            Self {
                file,
                len: complete as u64,
            },
            records,
        ))
    }

    pub(crate) fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for record in records {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
        }
        // One write for the whole batch keeps a schema and its version together.
        let result = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(trunc) = self.file.set_len(self.len) {
                    tracing::error!(error = %trunc, "could not roll back partial schema registry write");
                }
                Err(e)
            }
        }
    }
}

pub(crate) fn corrupt(path: &Path, line: usize, reason: impl Into<String>) -> RegistryError {
    RegistryError::Corrupt {
        path: PathBuf::from(path),
        line,
        reason: reason.into(),
    }
}

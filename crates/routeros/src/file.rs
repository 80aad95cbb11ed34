//! `/file print detail` records.

use crate::error::ParseError;

/// A file on the RDS (`name` normalised to a leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    /// `type=` (`directory`, `.img file`, …).
    pub kind: Option<String>,
    pub size_bytes: Option<u64>,
    pub last_modified: Option<String>,
    pub creation_time: Option<String>,
}

pub fn parse_files(output: &str) -> Result<Vec<FileEntry>, ParseError> {
    let _ = output;
    unimplemented!("routeros skeleton")
}

//! Generic `print detail` record parsing: Flags header, index lines, wrapped continuation
//! lines (including mid-token wraps), quoted and unquoted values, CRLF.

/// One printed item: optional index and flag letters, then ordered `key=value` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub index: Option<u32>,
    pub flags: String,
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// First value for `key` (exact key match; `size` never matches `file-size`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Splits output into records. Empty output or a Flags legend alone yields no records.
pub fn parse_records(output: &str) -> Vec<Record> {
    let _ = output;
    unimplemented!("routeros skeleton")
}

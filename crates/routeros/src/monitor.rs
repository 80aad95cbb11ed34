//! `key: value` outputs (`/system resource print`, `monitor … once`).

use crate::error::ParseError;

/// Parses `key: value` lines (values may be quoted; keys right-aligned with spaces).
pub fn parse_key_values(output: &str) -> Vec<(String, String)> {
    let _ = output;
    unimplemented!("routeros skeleton")
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemResource {
    pub version: Option<String>,
    pub board_name: Option<String>,
    pub uptime: Option<String>,
    pub free_memory_bytes: Option<u64>,
    pub total_memory_bytes: Option<u64>,
    pub free_hdd_bytes: Option<u64>,
}

pub fn parse_system_resource(output: &str) -> Result<SystemResource, ParseError> {
    let _ = output;
    unimplemented!("routeros skeleton")
}

//! The pool capacity query (`/disk print detail where mount-point="storage-pool"`).

use crate::error::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

pub fn parse_capacity(output: &str) -> Result<Capacity, ParseError> {
    let _ = output;
    unimplemented!("routeros skeleton")
}

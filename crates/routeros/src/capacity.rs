//! The pool capacity query (`/disk print detail where mount-point="storage-pool"`).

use crate::error::ParseError;
use crate::record::parse_records_checked;
use crate::size::parse_size;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// Reads `size=`/`free=` of the first record that has both. A zero total or more free than
/// total means the query hit something that is not the pool, and reporting it as capacity
/// would make the controller promise space it does not have.
pub fn parse_capacity(output: &str) -> Result<Capacity, ParseError> {
    let (records, stray) = parse_records_checked(output);
    if let Some(line) = stray.first() {
        return Err(ParseError(format!(
            "unexpected line in capacity output: {:?}",
            line.chars().take(120).collect::<String>()
        )));
    }
    let Some(record) = records
        .iter()
        .find(|r| r.get("size").is_some() && r.get("free").is_some())
    else {
        return Err(ParseError(
            "capacity output has no record with size= and free= (is the mount point right?)"
                .to_owned(),
        ));
    };
    let field = |k: &str| {
        parse_size(record.get(k).unwrap_or_default())
            .map_err(|e| ParseError(format!("capacity {k}: {}", e.0)))
    };
    let total_bytes = field("size")?;
    let free_bytes = field("free")?;
    if total_bytes == 0 {
        return Err(ParseError("pool reports a total size of 0".to_owned()));
    }
    if free_bytes > total_bytes {
        return Err(ParseError(format!(
            "pool reports more free ({free_bytes}) than total ({total_bytes}) bytes"
        )));
    }
    Ok(Capacity {
        total_bytes,
        free_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_pool_line() {
        let out = " 0  slot=storage-pool type=partition mount-point=storage-pool file-system=btrfs size=7 949 127 950 336 free=5 963 595 964 416 use=25%\r\n";
        let c = parse_capacity(out).unwrap();
        assert_eq!(c.total_bytes, 7_949_127_950_336);
        assert_eq!(c.free_bytes, 5_963_595_964_416);
    }

    #[test]
    fn wrapped_numbers_still_parse() {
        let out = "slot=storage-pool size=7 681 574\r\n      174 720 free=7 301 927 047 168 use=5%";
        let c = parse_capacity(out).unwrap();
        assert_eq!(c.total_bytes, 7_681_574_174_720);
        assert_eq!(c.free_bytes, 7_301_927_047_168);
    }

    #[test]
    fn refuses_zero_total_missing_fields_and_nonsense() {
        assert!(parse_capacity("size=0 free=0").is_err());
        assert!(parse_capacity("size=10 free=11").is_err());
        assert!(parse_capacity("slot=storage-pool size=10").is_err());
        assert!(parse_capacity("").is_err());
        assert!(parse_capacity("Flags: X - disabled\r\n").is_err());
        assert!(parse_capacity("failure: no such item").is_err());
        assert!(parse_capacity("size=abc free=1").is_err());
    }
}

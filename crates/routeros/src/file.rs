//! `/file print detail` records.

use crate::error::ParseError;
use crate::record::parse_records_checked;
use crate::size::parse_size;

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

/// Parses `/file print detail` output. RouterOS prints names without a leading `/` while
/// `/disk` paths have one; normalising here lets callers compare the two directly.
/// Timestamps stay strings: two formats exist and nothing here needs them as instants.
pub fn parse_files(output: &str) -> Result<Vec<FileEntry>, ParseError> {
    let (records, stray) = parse_records_checked(output);
    if let Some(line) = stray.first() {
        return Err(ParseError(format!(
            "unexpected line in file listing: {:?}",
            line.chars().take(120).collect::<String>()
        )));
    }
    records
        .into_iter()
        .map(|r| {
            let name = match r.get("name") {
                Some(n) if !n.is_empty() => {
                    if n.starts_with('/') {
                        n.to_owned()
                    } else {
                        format!("/{n}")
                    }
                }
                _ => return Err(ParseError("file record without a name".to_owned())),
            };
            let size_bytes = match r.get("size").filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => {
                    Some(parse_size(v).map_err(|e| ParseError(format!("file {name:?}: {}", e.0)))?)
                }
            };
            let text = |k: &str| r.get(k).filter(|v| !v.is_empty()).map(str::to_owned);
            Ok(FileEntry {
                kind: text("type"),
                size_bytes,
                last_modified: text("last-modified"),
                creation_time: text("creation-time"),
                name,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_line_listing_records() {
        let out = " 0   name=storage-pool/metal-csi type=directory\r\n     last-modified=2025-11-11 16:47:07\r\n\r\n 1   name=storage-pool/metal-csi/pvc-1.img\r\n     type=.img file size=10.0GiB last-modified=2025-11-11 14:32:41\r\n";
        let files = parse_files(out).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "/storage-pool/metal-csi");
        assert_eq!(files[0].kind.as_deref(), Some("directory"));
        assert_eq!(files[0].size_bytes, None);
        assert_eq!(
            files[0].last_modified.as_deref(),
            Some("2025-11-11 16:47:07")
        );
        assert_eq!(files[1].name, "/storage-pool/metal-csi/pvc-1.img");
        assert_eq!(files[1].kind.as_deref(), Some(".img file"));
        assert_eq!(files[1].size_bytes, Some(10 << 30));
    }

    #[test]
    fn keeps_both_timestamp_formats_and_raw_sizes() {
        let f = &parse_files(
            "name=/a.img type=file size=53 687 091 200 creation-time=nov/15/2025 14:32:41",
        )
        .unwrap()[0];
        assert_eq!(f.name, "/a.img");
        assert_eq!(f.size_bytes, Some(53_687_091_200));
        assert_eq!(f.creation_time.as_deref(), Some("nov/15/2025 14:32:41"));
        assert_eq!(f.last_modified, None);
    }

    #[test]
    fn wrapped_type_rejoins_with_a_space() {
        let f = &parse_files(
            "name=storage-pool/a.img type=.img\n                    file size=1024.0MiB",
        )
        .unwrap()[0];
        assert_eq!(f.kind.as_deref(), Some(".img file"));
        assert_eq!(f.size_bytes, Some(1 << 30));
    }

    #[test]
    fn rejects_nameless_records_and_stray_text() {
        assert!(parse_files("type=file size=1").is_err());
        assert!(parse_files("bad command name print").is_err());
        assert!(parse_files("name=a size=huge").is_err());
    }
}

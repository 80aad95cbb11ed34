//! Which volume capabilities this driver serves, shared by CreateVolume and
//! ValidateVolumeCapabilities so the two can never disagree.

use csi::v1::VolumeCapability;
use csi::v1::volume_capability::AccessType;
use csi::v1::volume_capability::access_mode::Mode;

/// Filesystems the node plugin can create and grow.
pub const FS_TYPES: &[&str] = &["ext4", "xfs"];

/// Returns why a capability is unsupported, or `None` when it is fine.
pub fn unsupported(cap: &VolumeCapability) -> Option<String> {
    let mode = cap.access_mode.as_ref().map(|m| m.mode).unwrap_or(0);
    let mode = Mode::try_from(mode).unwrap_or(Mode::Unknown);
    let block = match &cap.access_type {
        Some(AccessType::Block(_)) => true,
        Some(AccessType::Mount(m)) => {
            let Ok(fs) = m.fs_type.parse::<mount::FsType>() else {
                return Some(format!(
                    "filesystem {:?} is not supported; use one of {FS_TYPES:?} (empty means ext4)",
                    m.fs_type
                ));
            };
            // The node's own rule set: what it would refuse at NodeStage is refused here too.
            // `exec` is left to the node, which alone knows whether the volume allows it.
            let user: Vec<&str> = m
                .mount_flags
                .iter()
                .map(String::as_str)
                .filter(|f| *f != "exec")
                .collect();
            if let Err(e) = mount::build_mount_options(&user, Some(fs), Default::default()) {
                return Some(bounded(&format!("mount options refused: {e}")));
            }
            false
        }
        None => return Some("volume capability must specify either block or mount".into()),
    };
    match mode {
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter => None,
        // Two writers on one NVMe namespace is only safe when the consumer coordinates, as a
        // VM live migration does on a raw block device; a filesystem would be corrupted.
        Mode::MultiNodeMultiWriter if block => None,
        Mode::MultiNodeMultiWriter => Some(
            "MULTI_NODE_MULTI_WRITER requires volumeMode: Block (a shared filesystem would be corrupted)"
                .into(),
        ),
        Mode::Unknown => Some("volume capability has no access mode".into()),
        other => Some(format!("access mode {} is not supported", other.as_str_name())),
    }
}

/// Messages quote the caller's options: keep them short enough for a gRPC status.
fn bounded(msg: &str) -> String {
    const MAX: usize = 512;
    if msg.len() <= MAX {
        return msg.to_string();
    }
    let mut end = MAX;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &msg[..end], msg.len())
}

/// Validates a non-empty list of capabilities.
pub fn check_all(caps: &[VolumeCapability]) -> Result<(), String> {
    if caps.is_empty() {
        return Err("volume capabilities are required".into());
    }
    for cap in caps {
        if let Some(why) = unsupported(cap) {
            return Err(why);
        }
    }
    Ok(())
}

/// True when every capability asks for a raw block device (no filesystem to grow on the node).
pub fn all_block(caps: &[VolumeCapability]) -> bool {
    !caps.is_empty()
        && caps
            .iter()
            .all(|c| matches!(c.access_type, Some(AccessType::Block(_))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::v1::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(mode: Mode, block: bool, fs: &str) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(if block {
                AccessType::Block(BlockVolume {})
            } else {
                AccessType::Mount(MountVolume {
                    fs_type: fs.into(),
                    ..Default::default()
                })
            }),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    #[test]
    fn single_node_modes_are_served() {
        for m in [
            Mode::SingleNodeWriter,
            Mode::SingleNodeReaderOnly,
            Mode::SingleNodeSingleWriter,
        ] {
            assert_eq!(unsupported(&cap(m, false, "ext4")), None);
            assert_eq!(unsupported(&cap(m, true, "")), None);
        }
    }

    #[test]
    fn multi_writer_needs_block() {
        assert_eq!(
            unsupported(&cap(Mode::MultiNodeMultiWriter, true, "")),
            None
        );
        let why = unsupported(&cap(Mode::MultiNodeMultiWriter, false, "ext4")).unwrap();
        assert!(why.contains("Block"), "{why}");
    }

    #[test]
    fn unsupported_modes_and_filesystems_are_named() {
        let why = unsupported(&cap(Mode::MultiNodeReaderOnly, true, "")).unwrap();
        assert!(why.contains("MULTI_NODE_READER_ONLY"), "{why}");
        let why = unsupported(&cap(Mode::SingleNodeWriter, false, "btrfs")).unwrap();
        assert!(why.contains("btrfs"), "{why}");
        let none = VolumeCapability {
            access_type: None,
            access_mode: None,
        };
        assert!(unsupported(&none).is_some());
        assert!(check_all(&[]).is_err());
    }
}

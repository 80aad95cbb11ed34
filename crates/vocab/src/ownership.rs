//! The one rule that decides whether a disk on an RDS is a volume of this driver, and what the
//! driver recorded about it when it made it.
//!
//! A slot name proves nothing: anyone with RouterOS access can add a disk called `pvc-victim`.
//! Every RPC that acts on a disk or reports one asks [`owned`] first, so a hand-made disk, a disk
//! whose file lies beside the volume paths (`/storage-pool/metal-csi-evil`) or the pool disk
//! itself is never resized, attached, copied, adopted, deleted or listed.
//!
//! **What the driver records.** The volume's backing file name carries what CreateVolume
//! decided and what a later RPC must read from the volume rather than from the request:
//!
//! ```text
//! <dir>/<slot>[.hf][.p-<16 hex>].img
//! ```
//!
//! `hf` marks a host-fenced volume (StorageClass `hostFencing: "true"`), so ControllerPublish
//! takes the fencing mode from the RDS and never from a volume_context a caller can forge.
//! `p-…` is a fingerprint of everything else the CreateVolume request decided (parameters,
//! content source, access types other than the default ext4 mount), so a retry that asks for
//! something else is refused with ALREADY_EXISTS; a plain request records none. The file name is used, as for snapshots' lineage, because it needs no
//! Kubernetes, survives restarts and is printed by every RouterOS version we have output from.
//! A plain `<slot>.img` (a plain request, an earlier driver, or a static volume made by hand)
//! is owned and not host fenced; an unknown tag makes the name foreign, never guessed.

use routeros::{Disk, FilePath, Slot};
use uuid::Uuid;

use crate::backend::Backend;
use crate::volume_id::{SLOT_PREFIX, nqn_for_slot};

const EXT: &str = ".img";
const HOST_FENCED_TAG: &str = "hf";
const FINGERPRINT_TAG: &str = "p-";
const FINGERPRINT_LEN: usize = 16;
/// Namespace of the request fingerprint (fixed: changing it would make every retry conflict).
const FINGERPRINT_NAMESPACE: Uuid = Uuid::from_u128(0x3b1f_7d2e_5a64_4c1b_9e0d_8f2a_6c4b_1d70);

/// What a volume's backing file name records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    pub host_fencing: bool,
    /// `None` for a plain request (no parameters, no content source, the default ext4
    /// mount), which is also how static volumes and an earlier driver's volumes read.
    pub fingerprint: Option<String>,
}

/// A disk the driver may act on: where its file is and what its name records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub file: FilePath,
    pub dir: FilePath,
    pub marks: Marks,
}

/// The backing file name for `slot` with `marks`.
pub fn file_name(slot: &Slot, marks: &Marks) -> String {
    let mut name = slot.as_str().to_string();
    if marks.host_fencing {
        name.push('.');
        name.push_str(HOST_FENCED_TAG);
    }
    if let Some(fp) = &marks.fingerprint {
        name.push('.');
        name.push_str(FINGERPRINT_TAG);
        name.push_str(fp);
    }
    name.push_str(EXT);
    name
}

/// What the base name `name` records for `slot`, or `None` when it is not a name this driver
/// gives volume `slot` (tags unknown, repeated or out of order make it foreign).
pub fn parse_file_name(slot: &str, name: &str) -> Option<Marks> {
    let rest = name.strip_suffix(EXT)?.strip_prefix(slot)?;
    if rest.is_empty() {
        return Some(Marks::default());
    }
    let mut marks = Marks::default();
    let mut parts = rest.strip_prefix('.')?.split('.').peekable();
    if parts.peek() == Some(&HOST_FENCED_TAG) {
        marks.host_fencing = true;
        parts.next();
    }
    if let Some(part) = parts.next() {
        let fp = part.strip_prefix(FINGERPRINT_TAG)?;
        let hex = fp.len() == FINGERPRINT_LEN
            && fp
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return None;
        }
        marks.fingerprint = Some(fp.to_string());
    }
    parts.next().is_none().then_some(marks)
}

/// The slot a backing file belongs to, when its base name is one this driver gives volumes
/// (`pvc-…` slots only).
pub fn slot_of_file(base_name: &str) -> Option<&str> {
    let slot = base_name.split('.').next()?;
    let ok = slot.starts_with(SLOT_PREFIX)
        && Slot::new(slot).is_ok()
        && parse_file_name(slot, base_name).is_some();
    ok.then_some(slot)
}

/// A stable fingerprint of `parts` (each a `key=value` line the caller built), order-insensitive.
pub fn fingerprint(parts: &[String]) -> String {
    let mut sorted: Vec<&str> = parts.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let text = sorted.join("\n");
    let id = Uuid::new_v5(&FINGERPRINT_NAMESPACE, text.as_bytes());
    id.simple().to_string()[..FINGERPRINT_LEN].to_string()
}

/// Why a disk is not the driver's, in words an operator can act on (it goes into the refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Foreign(pub String);

/// Whether the driver may act on or report `disk` on `backend`, and if so what its name records.
pub fn owned(backend: &Backend, disk: &Disk) -> Result<Owned, Foreign> {
    let why = |what: String| {
        Err(Foreign(format!(
            "disk {:?} on backend {} is not one of this driver's volumes: {what}",
            disk.slot, backend.name
        )))
    };
    if !disk.slot.starts_with(SLOT_PREFIX) {
        return why(format!("its slot does not start with {SLOT_PREFIX:?}"));
    }
    let Ok(slot) = Slot::new(&disk.slot) else {
        return why("its slot is not a valid slot name".into());
    };
    if disk.kind.as_deref() != Some("file") {
        return why(format!("it is not a file disk (type {:?})", disk.kind));
    }
    let Some(raw) = disk.file_path.as_deref() else {
        return why("RouterOS printed no file-path for it".into());
    };
    let Ok(file) = FilePath::new(raw) else {
        return why(format!(
            "its file-path {raw:?} is not a plain absolute path"
        ));
    };
    let Some((dir, base)) = file.as_str().rsplit_once('/') else {
        return why(format!("its file-path {raw:?} has no directory"));
    };
    let Ok(dir) = FilePath::new(dir) else {
        return why(format!("its file {raw:?} lies directly in the root"));
    };
    if !backend.allows(&dir) {
        let allowed: Vec<&str> = backend.allowed_paths.iter().map(|p| p.as_str()).collect();
        return why(format!(
            "its file {raw:?} is outside the volume paths ({})",
            allowed.join(", ")
        ));
    }
    let Some(marks) = parse_file_name(slot.as_str(), base) else {
        return why(format!(
            "its file name {base:?} is not <slot>.img (optionally tagged) as the driver names volume files"
        ));
    };
    if let Some(nqn) = &disk.nvme_nqn {
        let expected = nqn_for_slot(&slot).map_err(|e| Foreign(e.to_string()))?;
        if nqn != expected.as_str() {
            return why(format!(
                "it is exported as {nqn:?}, not as {:?}",
                expected.as_str()
            ));
        }
    }
    Ok(Owned { file, dir, marks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SLOT: &str = "pvc-a1b2c3d4-e5f6-7890-abcd-ef1234567890";

    fn backend() -> Backend {
        let exec = Arc::new(rds::testing::ScriptedExec::new());
        Backend {
            name: "default".into(),
            client: Arc::new(rds::RdsClient::new(exec, rds::ClientConfig::default())),
            nvme_addresses: vec!["10.0.0.1".parse().unwrap()],
            nvme_port: routeros::Port::new(4420).unwrap(),
            volume_path: FilePath::new("/storage-pool/metal-csi").unwrap(),
            allowed_paths: vec![
                FilePath::new("/storage-pool/metal-csi").unwrap(),
                FilePath::new("/nvme-pool/csi").unwrap(),
            ],
            insecure: false,
            target: "t".into(),
        }
    }

    fn disk(slot: &str, kind: &str, path: &str) -> Disk {
        let text = format!("slot={slot} type={kind} file-path={path}");
        routeros::disk::parse_disks(&text).unwrap().remove(0)
    }

    #[test]
    fn names_round_trip_and_unknown_tags_are_foreign() {
        let slot = Slot::new(SLOT).unwrap();
        for marks in [
            Marks::default(),
            Marks {
                host_fencing: true,
                fingerprint: None,
            },
            Marks {
                host_fencing: true,
                fingerprint: Some(fingerprint(&["a=b".into()])),
            },
            Marks {
                host_fencing: false,
                fingerprint: Some(fingerprint(&[])),
            },
        ] {
            let name = file_name(&slot, &marks);
            assert_eq!(parse_file_name(SLOT, &name), Some(marks), "{name}");
            assert_eq!(slot_of_file(&name), Some(SLOT));
        }
        for bad in [
            format!("{SLOT}.img.bak"),
            format!("{SLOT}.x.img"),
            format!("{SLOT}.hf.hf.img"),
            format!("{SLOT}.p-0123.img"),
            format!("{SLOT}.p-0123456789abcdeF.img"),
            format!("{SLOT}.p-0123456789abcdef.hf.img"),
            format!("{SLOT}x.img"),
            format!("{SLOT}..img"),
        ] {
            assert_eq!(parse_file_name(SLOT, &bad), None, "{bad}");
        }
    }

    #[test]
    fn fingerprint_ignores_order_and_sees_every_part() {
        let a = fingerprint(&["x=1".into(), "y=2".into()]);
        assert_eq!(a, fingerprint(&["y=2".into(), "x=1".into()]));
        assert_ne!(a, fingerprint(&["x=1".into(), "y=3".into()]));
        assert_eq!(a.len(), FINGERPRINT_LEN);
    }

    #[test]
    fn only_driver_shaped_file_disks_under_the_volume_paths_are_owned() {
        let b = backend();
        let ok = disk(SLOT, "file", &format!("/storage-pool/metal-csi/{SLOT}.img"));
        assert!(owned(&b, &ok).is_ok());
        let deep = disk(SLOT, "file", &format!("/nvme-pool/csi/sub/{SLOT}.hf.img"));
        assert!(owned(&b, &deep).unwrap().marks.host_fencing);
        for (slot, kind, path) in [
            (
                SLOT,
                "file",
                format!("/storage-pool/metal-csi-evil/{SLOT}.img"),
            ),
            (SLOT, "file", format!("/storage-pool/{SLOT}.img")),
            (
                SLOT,
                "file",
                "/storage-pool/metal-csi/other.img".to_string(),
            ),
            (
                SLOT,
                "file",
                format!("/storage-pool/metal-csi/{SLOT}.img.bak"),
            ),
            (
                SLOT,
                "partition",
                format!("/storage-pool/metal-csi/{SLOT}.img"),
            ),
            (
                "storage-pool",
                "file",
                "/storage-pool/metal-csi/storage-pool.img".into(),
            ),
        ] {
            assert!(
                owned(&b, &disk(slot, kind, &path)).is_err(),
                "{slot} {kind} {path}"
            );
        }
        let wrong_nqn = routeros::disk::parse_disks(&format!(
            "slot={SLOT} type=file file-path=/storage-pool/metal-csi/{SLOT}.img nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:other"
        ))
        .unwrap()
        .remove(0);
        assert!(owned(&b, &wrong_nqn).is_err());
    }
}

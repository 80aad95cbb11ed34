#![allow(clippy::unwrap_used)]

use std::path::Path;

use nvme::{HostIdentityConfig, IdentitySource, load_host_identity};

const U1: &str = "7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f";
const U2: &str = "0b8f1a52-93c4-4d6e-a7f0-112233445566";

fn cfg(dir: &Path) -> HostIdentityConfig {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    HostIdentityConfig {
        hostnqn_path: dir.join("etc/hostnqn"),
        hostid_path: dir.join("etc/hostid"),
        state_dir: dir.join("state"),
    }
}

fn hostnqn(u: &str) -> String {
    format!("nqn.2014-08.org.nvmexpress:uuid:{u}\n")
}

#[test]
fn consistent_host_files_are_used_as_is() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    std::fs::write(&c.hostnqn_path, hostnqn(U1)).unwrap();
    std::fs::write(&c.hostid_path, format!("{U1}\n")).unwrap();
    let l = load_host_identity(&c).unwrap();
    assert_eq!(l.source, IdentitySource::HostFiles);
    assert_eq!(l.identity.hostid(), U1);
    assert_eq!(l.identity.hostnqn().as_str(), hostnqn(U1).trim());
    assert!(l.notes.is_empty());
    assert!(!c.state_dir.exists(), "nothing should be persisted");
}

#[test]
fn mismatched_pair_is_derived_from_the_host_nqn_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    std::fs::write(&c.hostnqn_path, hostnqn(U1)).unwrap();
    std::fs::write(&c.hostid_path, U2).unwrap();
    let l = load_host_identity(&c).unwrap();
    assert_eq!(l.source, IdentitySource::DerivedFromHostNqn);
    assert_eq!(l.identity.hostid(), U1);
    assert_eq!(l.notes.len(), 1);
    assert!(l.notes[0].contains("disagrees"), "{:?}", l.notes);
    // The host's files are not ours to rewrite.
    assert_eq!(std::fs::read_to_string(&c.hostid_path).unwrap(), U2);
}

#[test]
fn only_hostid_present_derives_the_nqn() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    std::fs::write(&c.hostid_path, U2).unwrap();
    let l = load_host_identity(&c).unwrap();
    assert_eq!(l.source, IdentitySource::DerivedFromHostId);
    assert_eq!(l.identity.hostnqn().as_str(), hostnqn(U2).trim());
    assert!(l.notes[0].contains("missing"));
}

#[test]
fn only_hostnqn_present_derives_the_id() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    std::fs::write(&c.hostnqn_path, hostnqn(U1)).unwrap();
    let l = load_host_identity(&c).unwrap();
    assert_eq!(l.source, IdentitySource::DerivedFromHostNqn);
    assert_eq!(l.identity.hostid(), U1);
}

#[test]
fn non_uuid_hostnqn_with_valid_hostid_uses_the_id() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    std::fs::write(&c.hostnqn_path, "nqn.2024-01.io.example:node-7").unwrap();
    std::fs::write(&c.hostid_path, U2).unwrap();
    let l = load_host_identity(&c).unwrap();
    assert_eq!(l.source, IdentitySource::DerivedFromHostId);
    assert_eq!(l.identity.hostid(), U2);
    assert!(l.notes[0].contains("node-7"), "{:?}", l.notes);
}

#[test]
fn nothing_present_generates_persists_and_is_stable() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    let first = load_host_identity(&c).unwrap();
    assert_eq!(first.source, IdentitySource::Generated);
    let stored_nqn = std::fs::read_to_string(c.state_dir.join("hostnqn")).unwrap();
    let stored_id = std::fs::read_to_string(c.state_dir.join("hostid")).unwrap();
    assert_eq!(stored_nqn.trim(), first.identity.hostnqn().as_str());
    assert_eq!(stored_id.trim(), first.identity.hostid());
    assert_eq!(
        stored_nqn.trim(),
        format!("nqn.2014-08.org.nvmexpress:uuid:{}", stored_id.trim())
    );

    let second = load_host_identity(&c).unwrap();
    assert_eq!(second.source, IdentitySource::StateDir);
    assert_eq!(second.identity, first.identity);
}

#[test]
fn garbage_and_nil_values_are_not_trusted() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    // What `nvme gen-hostnqn` prints under some hypervisors, and a broken hostid.
    std::fs::write(
        &c.hostnqn_path,
        hostnqn("00000000-0000-0000-0000-000000000000"),
    )
    .unwrap();
    std::fs::write(&c.hostid_path, "not-a-uuid,hostnqn=x").unwrap();
    let l = load_host_identity(&c).unwrap();
    assert_eq!(l.source, IdentitySource::Generated);
    assert!(!l.identity.uuid().is_nil());
    assert_eq!(l.notes.len(), 3, "{:?}", l.notes);
}

#[test]
fn inconsistent_state_dir_is_repaired() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    std::fs::create_dir_all(&c.state_dir).unwrap();
    std::fs::write(c.state_dir.join("hostnqn"), hostnqn(U1)).unwrap();
    std::fs::write(c.state_dir.join("hostid"), U2).unwrap();
    let l = load_host_identity(&c).unwrap();
    assert_eq!(l.source, IdentitySource::StateDir);
    assert_eq!(l.identity.hostid(), U1);
    assert_eq!(
        std::fs::read_to_string(c.state_dir.join("hostid"))
            .unwrap()
            .trim(),
        U1
    );
}

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use mount::{Error, FsType, OptionPolicy, build_mount_options};

fn rejected(opts: &[&str], fs: Option<FsType>, policy: OptionPolicy) -> (String, String) {
    match build_mount_options(opts, fs, policy) {
        Err(Error::MountOption {
            option,
            reason,
            allowed,
        }) => (option, format!("{reason} | {allowed}")),
        other => panic!("expected rejection of {opts:?}, got {other:?}"),
    }
}

const EXT4: Option<FsType> = Some(FsType::Ext4);
const XFS: Option<FsType> = Some(FsType::Xfs);
const DEFAULT: OptionPolicy = OptionPolicy { allow_exec: false };
const EXEC_OK: OptionPolicy = OptionPolicy { allow_exec: true };

#[test]
fn empty_list_gets_nosuid_nodev_noexec() {
    let o = build_mount_options::<&str>(&[], EXT4, DEFAULT).unwrap();
    assert!(o.flags.nosuid && o.flags.nodev && o.flags.noexec);
    assert!(!o.flags.read_only);
    assert!(o.data.is_empty());
}

#[test]
fn opt_out_drops_noexec_but_never_nosuid_nodev() {
    let o = build_mount_options::<&str>(&[], EXT4, EXEC_OK).unwrap();
    assert!(!o.flags.noexec);
    assert!(o.flags.nosuid && o.flags.nodev);
    let o = build_mount_options(&["exec"], None, EXEC_OK).unwrap();
    assert!(!o.flags.noexec);
    let o = build_mount_options(&["noexec"], None, EXEC_OK).unwrap();
    assert!(o.flags.noexec);
}

#[test]
fn exec_rejected_without_opt_out() {
    let (opt, msg) = rejected(&["exec"], EXT4, DEFAULT);
    assert_eq!(opt, "exec");
    assert!(msg.contains("not enabled"), "{msg}");
}

#[test]
fn suid_and_dev_always_rejected() {
    for o in ["suid", "dev"] {
        for policy in [DEFAULT, EXEC_OK] {
            let (opt, msg) = rejected(&[o], EXT4, policy);
            assert_eq!(opt, o);
            assert!(msg.contains("privilege"), "{msg}");
        }
    }
}

#[test]
fn common_flags_map_to_mount_flags() {
    let o = build_mount_options(
        &["ro", "noatime", "nodiratime", "lazytime", "sync"],
        None,
        DEFAULT,
    )
    .unwrap();
    assert!(o.flags.read_only && o.flags.noatime && o.flags.nodiratime);
    assert!(o.flags.lazytime && o.flags.sync);
    let o = build_mount_options(&["ro", "rw", "sync", "async"], None, DEFAULT).unwrap();
    assert!(!o.flags.read_only && !o.flags.sync);
}

#[test]
fn atime_options_are_mutually_exclusive_last_wins() {
    let o = build_mount_options(&["noatime", "relatime"], EXT4, DEFAULT).unwrap();
    assert!(o.flags.relatime && !o.flags.noatime && !o.flags.strictatime);
    let o = build_mount_options(&["relatime", "strictatime"], EXT4, DEFAULT).unwrap();
    assert!(o.flags.strictatime && !o.flags.relatime);
}

#[test]
fn comma_injection_rejected() {
    let (opt, msg) = rejected(&["ro,suid"], EXT4, DEFAULT);
    assert_eq!(opt, "ro,suid");
    assert!(msg.contains("','"), "{msg}");
}

#[test]
fn whitespace_control_and_empty_rejected() {
    rejected(&["ro "], EXT4, DEFAULT);
    rejected(&["no\natime"], EXT4, DEFAULT);
    rejected(&[""], EXT4, DEFAULT);
}

#[test]
fn value_on_flag_option_rejected() {
    for o in [
        "ro=1",
        "noatime=yes",
        "discard=1",
        "inode64=1",
        "nouuid=",
        "exec=1",
    ] {
        let fs = if o.starts_with("inode") || o.starts_with("nouuid") {
            XFS
        } else {
            EXT4
        };
        let (_, msg) = rejected(&[o], fs, EXEC_OK);
        assert!(msg.contains("takes no value"), "{o}: {msg}");
    }
}

#[test]
fn ext4_data_options_pass_through_as_mount_data() {
    let o = build_mount_options(
        &[
            "discard",
            "data=journal",
            "errors=remount-ro",
            "commit=30",
            "noatime",
        ],
        EXT4,
        DEFAULT,
    )
    .unwrap();
    assert_eq!(
        o.data_string(),
        "discard,data=journal,errors=remount-ro,commit=30"
    );
    assert!(o.flags.noatime);
    for ok in [
        "nodiscard",
        "data=ordered",
        "data=writeback",
        "errors=continue",
        "commit=1",
        "commit=300",
    ] {
        build_mount_options(&[ok], EXT4, DEFAULT).unwrap();
    }
}

#[test]
fn ext4_bad_values_rejected() {
    for bad in [
        "data=foo",
        "data=",
        "data",
        "errors=panic",
        "commit=0",
        "commit=301",
        "commit=x",
    ] {
        let (opt, _) = rejected(&[bad], EXT4, DEFAULT);
        assert_eq!(opt, bad);
    }
}

#[test]
fn xfs_options() {
    let o = build_mount_options(
        &[
            "inode64",
            "nouuid",
            "logbsize=256k",
            "allocsize=64m",
            "discard",
        ],
        XFS,
        DEFAULT,
    )
    .unwrap();
    assert_eq!(
        o.data,
        [
            "inode64",
            "nouuid",
            "logbsize=256k",
            "allocsize=64m",
            "discard"
        ]
    );
    build_mount_options(&["allocsize=65536"], XFS, DEFAULT).unwrap();
    for bad in [
        "logbsize=100k",
        "allocsize=",
        "allocsize=1x",
        "allocsize=1mm",
        "allocsize=k",
        "logbsize",
    ] {
        rejected(&[bad], XFS, DEFAULT);
    }
}

#[test]
fn options_of_the_other_filesystem_rejected() {
    let (_, msg) = rejected(&["inode64"], EXT4, DEFAULT);
    assert!(msg.contains("not allowed for ext4"), "{msg}");
    rejected(&["data=ordered"], XFS, DEFAULT);
}

#[test]
fn filesystem_options_rejected_on_bind_mounts() {
    let (_, msg) = rejected(&["discard"], None, DEFAULT);
    assert!(msg.contains("bind"), "{msg}");
}

#[test]
fn unknown_option_error_names_option_and_allowed_list() {
    let err = build_mount_options(&["uid=1000"], EXT4, DEFAULT).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"uid=1000\""), "{text}");
    assert!(
        text.contains("noatime") && text.contains("data=ordered|journal|writeback"),
        "{text}"
    );
    let allowed = |t: &str| -> Vec<String> {
        t.rsplit_once("allowed options: ")
            .unwrap()
            .1
            .split(", ")
            .map(String::from)
            .collect()
    };
    assert!(
        !allowed(&text).contains(&"exec".to_string()),
        "exec not offered: {text}"
    );
    let text = build_mount_options(&["context=x"], XFS, EXEC_OK)
        .unwrap_err()
        .to_string();
    let list = allowed(&text);
    assert!(
        list.contains(&"exec".to_string()) && list.contains(&"nouuid".to_string()),
        "{text}"
    );
}

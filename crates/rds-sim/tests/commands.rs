//! Each supported command over real SSH: output text and state effects.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rds_sim::{SimConfig, Storage};

fn lines(s: &str) -> Vec<&str> {
    s.split("\r\n").collect()
}

/// Every line ends in CRLF and fits an 80-column terminal.
fn assert_terminal_shape(out: &str) {
    assert!(out.ends_with("\r\n"), "{out:?}");
    assert!(
        !out.replace("\r\n", "").contains('\n'),
        "bare LF in {out:?}"
    );
    for l in lines(out) {
        assert!(l.len() < 80, "line too long ({}): {l:?}", l.len());
    }
}

/// Joins a property's continuation lines without spaces (mid-token wraps).
fn unwrap_value(out: &str, key: &str) -> String {
    let ls = lines(out);
    let start = ls
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("{key}=")))
        .unwrap();
    let mut v = ls[start].trim_start().to_string();
    for l in &ls[start + 1..] {
        let t = l.trim_start();
        if t.is_empty() || t.contains('=') {
            break;
        }
        v.push_str(t);
    }
    v
}

#[tokio::test]
async fn disk_add_then_print_detail_is_realistic() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    let add = exec(&c, &add_cmd(VOL, "10G")).await;
    assert_eq!((add.exit, add.stdout.as_str()), (Some(0), ""));

    let out = exec(&c, &format!("/disk print detail where slot={VOL}")).await;
    assert_eq!(out.exit, Some(0));
    assert_terminal_shape(&out.stdout);
    let ls = lines(&out.stdout);
    assert!(ls[0].starts_with("Flags: "), "{}", out.stdout);
    assert!(
        ls[1].starts_with(" 0   type=file slot=\"pvc-"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("size=10 737 418 240"));
    assert!(out.stdout.contains("file-size=10.0GiB"));
    assert!(out.stdout.contains("nvme-tcp-server-allow-host-name=\"\""));
    assert!(
        out.stdout
            .contains("nvme-tcp-export=yes nvme-tcp-server-port=4420")
    );
    assert!(!out.stdout.contains("status"));
    assert_eq!(
        unwrap_value(&out.stdout, "file-path"),
        format!("file-path={}", vol_path(VOL))
    );
    assert!(
        !out.stdout.contains(&vol_path(VOL)),
        "a path this long must be cut mid-token by the 80-column wrap"
    );
    assert_eq!(
        unwrap_value(&out.stdout, "nvme-tcp-server-nqn"),
        format!("nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:{VOL}\"")
    );

    let d = &sim.disks()[0];
    assert_eq!(
        (d.slot.as_str(), d.size, d.nvme_port),
        (VOL, 10 << 30, Some(4420))
    );
    assert!(d.nvme_export && d.allow_host.is_empty());
    assert_eq!(sim.files()[0].path, vol_path(VOL));
}

#[tokio::test]
async fn print_filters_and_the_pool_entry() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    exec(&c, &add_cmd("pvc-one", "1G")).await;
    exec(&c, &add_cmd("snap-two", "2G")).await;

    let none = exec(&c, "/disk print detail where slot=pvc-missing").await;
    assert_eq!(none.exit, Some(0));
    assert_eq!(
        lines(&none.stdout).len(),
        2,
        "legend only: {:?}",
        none.stdout
    );
    assert!(none.stdout.starts_with("Flags: "));

    let pvc = exec(&c, r#"/disk print detail where slot~"^pvc-""#).await;
    assert!(pvc.stdout.contains("slot=\"pvc-one\"") && !pvc.stdout.contains("snap-two"));

    let all = exec(&c, "/disk print detail").await;
    assert!(
        all.stdout
            .contains(" 0 M type=partition slot=\"storage-pool\""),
        "{}",
        all.stdout
    );
    assert!(all.stdout.contains(" 1   type=file slot=\"pvc-one\""));
    assert!(all.stdout.contains(" 2   type=file slot=\"snap-two\""));
    assert!(
        all.stdout.contains("\r\n\r\n"),
        "blank line between records"
    );

    let cap = exec(&c, r#"/disk print detail where mount-point="storage-pool""#).await;
    assert!(
        cap.stdout
            .contains("mount-point=storage-pool file-system=btrfs")
    );
    assert!(cap.stdout.contains("size=1 099 511 627 776"));
    let free = (1u64 << 40) - (3 << 30);
    let grouped = free
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        cap.stdout.contains(&format!("free={grouped} use=0%")),
        "{}",
        cap.stdout
    );
    assert!(!cap.stdout.contains("pvc-one"));
}

#[tokio::test]
async fn disk_add_rejections() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    let cases = [
        (
            "/disk add type=file slot=a nvme-tcp-export=no".to_string(),
            "failure: missing required parameters",
        ),
        (
            add_cmd("pvc-x", "1.5G"),
            "failure: invalid value for argument file-size",
        ),
        (
            add_cmd("pvc-x", "lots"),
            "failure: invalid value for argument file-size",
        ),
        (add_cmd("pvc-x", "2T"), "failure: not enough space"),
        (
            "/disk add type=file copy-from=[find slot=nope] file-path=/storage-pool/s.img slot=s"
                .to_string(),
            "failure: no such item",
        ),
    ];
    for (cmd, text) in cases {
        let out = exec(&c, &cmd).await;
        assert_eq!(
            (out.exit, out.stdout.as_str()),
            (Some(1), format!("{text}\r\n").as_str()),
            "{cmd}"
        );
    }
    assert!(sim.disks().is_empty());

    exec(&c, &add_cmd(VOL, "1G")).await;
    let dup = exec(&c, &add_cmd(VOL, "1G")).await;
    assert_eq!(dup.stdout, "failure: slot already exists\r\n");
    let same_file = format!(
        "/disk add type=file file-path={} file-size=1G slot=other",
        vol_path(VOL)
    );
    assert_eq!(
        exec(&c, &same_file).await.stdout,
        "failure: file already exists\r\n"
    );
    assert_eq!(sim.disks().len(), 1);
}

#[tokio::test]
async fn disk_set_grows_shrinks_and_ignores_unknown_slots() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    exec(&c, &add_cmd(VOL, "1G")).await;
    let grow = exec(&c, &format!("/disk set [find slot={VOL}] file-size=3G")).await;
    assert_eq!((grow.exit, grow.stdout.as_str()), (Some(0), ""));
    assert_eq!(sim.disks()[0].size, 3 << 30);
    assert_eq!(sim.files()[0].size, 3 << 30);
    exec(&c, &format!("/disk set [find slot={VOL}] file-size=2G")).await;
    assert_eq!(sim.disks()[0].size, 2 << 30, "RouterOS shrinks when asked");

    let unknown = exec(&c, "/disk set [find slot=pvc-nope] file-size=5G").await;
    assert_eq!((unknown.exit, unknown.stdout.as_str()), (Some(0), ""));
    let missing = exec(&c, &format!("/disk set [find slot={VOL}] comment=x")).await;
    assert_eq!(
        (missing.exit, missing.stdout.as_str()),
        (Some(1), "failure: file-size required\r\n")
    );
    let too_big = exec(&c, &format!("/disk set [find slot={VOL}] file-size=2T")).await;
    assert_eq!(too_big.stdout, "failure: not enough space\r\n");
    assert_eq!(sim.disks()[0].size, 2 << 30);
}

#[tokio::test]
async fn disk_remove_keeps_the_file_and_file_commands_manage_it() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    exec(&c, &add_cmd(VOL, "10G")).await;
    let name = vol_path(VOL).trim_start_matches('/').to_string();

    let in_use = exec(&c, &format!(r#"/file remove [find name="{name}"]"#)).await;
    assert_eq!(
        (in_use.exit, in_use.stdout.as_str()),
        (Some(1), "failure: file is in use\r\n")
    );

    let rm = exec(&c, &format!("/disk remove [find slot={VOL}]")).await;
    assert_eq!((rm.exit, rm.stdout.as_str()), (Some(0), ""));
    assert!(sim.disks().is_empty());
    assert_eq!(
        sim.files().len(),
        1,
        "backing file stays after /disk remove"
    );
    let again = exec(&c, &format!("/disk remove [find slot={VOL}]")).await;
    assert_eq!(again.exit, Some(0), "unknown slot is a silent no-op");

    let list = exec(
        &c,
        r#"/file print detail where name~"^storage-pool/metal-csi/""#,
    )
    .await;
    assert_terminal_shape(&list.stdout);
    assert!(
        list.stdout.starts_with(&format!(
            " 0   name={name}\r\n     type=.img file size=10.0GiB last-modified="
        )),
        "{}",
        list.stdout
    );
    let dirs = exec(
        &c,
        r#"/file print detail where name="storage-pool/metal-csi""#,
    )
    .await;
    assert!(
        dirs.stdout
            .starts_with(" 0   name=storage-pool/metal-csi type=directory"),
        "{}",
        dirs.stdout
    );

    let frm = exec(&c, &format!(r#"/file remove [find name="{name}"]"#)).await;
    assert_eq!((frm.exit, frm.stdout.as_str()), (Some(0), ""));
    assert!(sim.files().is_empty());
    assert_eq!(
        exec(&c, &format!(r#"/file remove [find name="{name}"]"#))
            .await
            .exit,
        Some(0)
    );
    assert_eq!(
        exec(&c, &format!(r#"/file print detail where name="{name}""#))
            .await
            .stdout,
        ""
    );
}

#[tokio::test]
async fn copy_from_copies_size_and_bytes_with_dir_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SimConfig::for_tests();
    cfg.storage = Storage::Dir(dir.path().to_path_buf());
    let (sim, key) = sim_with(cfg).await;
    let c = connect(&sim, &key).await;
    exec(&c, &add_cmd("pvc-src", "1M")).await;
    let backing = dir.path().join("storage-pool/metal-csi/pvc-src.img");
    assert_eq!(std::fs::metadata(&backing).unwrap().len(), 1 << 20);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap();
        f.write_all(b"hello disk").unwrap();
    }

    let out = exec(&c, "/disk add type=file copy-from=[find slot=pvc-src] file-path=/storage-pool/metal-csi/snap-1.img slot=snap-1").await;
    assert_eq!((out.exit, out.stdout.as_str()), (Some(0), ""));
    let copy = std::fs::read(dir.path().join("storage-pool/metal-csi/snap-1.img")).unwrap();
    assert!(copy.starts_with(b"hello disk"), "content copied");
    assert_eq!(copy.len(), 1 << 20);
    let snap = sim
        .disks()
        .into_iter()
        .find(|d| d.slot == "snap-1")
        .unwrap();
    assert_eq!(snap.size, 1 << 20, "the copy takes the source's size");
    assert!(!snap.nvme_export);
}

#[tokio::test]
async fn system_commands_and_errors() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    let res = exec(&c, "/system resource print").await;
    assert_eq!(res.exit, Some(0));
    assert!(
        res.stdout
            .contains("            version: 7.16 (stable)\r\n"),
        "{}",
        res.stdout
    );
    assert!(res.stdout.contains("         board-name: RDS2216\r\n"));
    assert!(res.stdout.contains("           platform: MikroTik\r\n"));
    let colon = res
        .stdout
        .lines()
        .map(|l| l.find(':').unwrap())
        .collect::<Vec<_>>();
    assert!(
        colon.windows(2).all(|w| w[0] == w[1]),
        "keys right-aligned: {}",
        res.stdout
    );
    assert_eq!(
        exec(&c, "/system identity print").await.stdout,
        "name: rds-sim\r\n"
    );

    let bad = exec(&c, "/ip address print").await;
    assert_eq!(
        (bad.exit, bad.stdout.as_str()),
        (Some(1), "bad command name /ip\r\n")
    );
    let syn = exec(&c, r#"/disk print detail where slot="pvc"#).await;
    assert_eq!(
        (syn.exit, syn.stdout.as_str()),
        (Some(1), "syntax error (line 1 column 31)\r\n")
    );
    assert!(sim.commands().contains(&"/ip address print".to_string()));
}

//! The driver's own command builders against the simulator, and its parsers on the replies:
//! proves the two sides agree on the realistic (wrapped, CRLF, grouped) shapes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use routeros::command as cmd;
use routeros::{ByteSize, DiskAdd, FilePath, MountPoint, Nqn, NvmeExport, Port, Slot};

#[tokio::test]
async fn builders_and_parsers_round_trip_through_the_simulator() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    let slot = Slot::new(VOL).unwrap();
    let path = FilePath::new(&vol_path(VOL)).unwrap();
    let add = cmd::disk_add(&DiskAdd {
        slot: slot.clone(),
        file_path: path.clone(),
        file_size: Some(ByteSize(3 << 29)),
        nvme: Some(NvmeExport {
            port: Port::new(4420).unwrap(),
            nqn: Nqn::new(&format!("nqn.2000-02.com.mikrotik:{VOL}")).unwrap(),
        }),
        copy_from: None,
    });
    let out = exec(&c, add.as_str()).await;
    assert_eq!(
        routeros::command::detect_failure(&out.stdout, &out.stderr, out.exit),
        None
    );

    let printed = exec(&c, cmd::disk_print_slot(&slot).as_str()).await;
    let disks = routeros::disk::parse_disks(&printed.stdout).unwrap();
    assert_eq!(disks.len(), 1, "{}", printed.stdout);
    let d = &disks[0];
    assert_eq!(d.slot, VOL);
    assert_eq!(
        d.file_path.as_deref(),
        Some(vol_path(VOL).as_str()),
        "mid-token wrap rejoined"
    );
    assert_eq!(d.size_bytes, Some(3 << 29));
    assert_eq!(d.nvme_port, Some(4420));
    assert_eq!(
        d.nvme_nqn.as_deref(),
        Some(format!("nqn.2000-02.com.mikrotik:{VOL}").as_str())
    );
    assert!(d.nvme_export);

    let listed = exec(&c, "/disk print detail").await;
    let all = routeros::disk::parse_disks(&listed.stdout).unwrap();
    assert_eq!(
        all.iter().map(|d| d.slot.as_str()).collect::<Vec<_>>(),
        ["storage-pool", VOL]
    );

    let pool = MountPoint::new("storage-pool").unwrap();
    let cap = exec(&c, cmd::capacity(&pool).as_str()).await;
    let cap = routeros::capacity::parse_capacity(&cap.stdout).unwrap();
    assert_eq!(
        (cap.total_bytes, cap.free_bytes),
        (1 << 40, (1 << 40) - (3 << 29))
    );

    let dir = FilePath::new("/storage-pool/metal-csi").unwrap();
    let files = exec(&c, cmd::file_print_under(&dir).as_str()).await;
    let files = routeros::file::parse_files(&files.stdout).unwrap();
    assert_eq!(files.len(), 1, "only entries under the directory");
    assert_eq!(files[0].name, vol_path(VOL));
    assert_eq!(files[0].size_bytes, Some(3 << 29), "1536.0MiB");

    let grow = exec(&c, cmd::disk_set_size(&slot, ByteSize(2 << 30)).as_str()).await;
    assert_eq!(grow.exit, Some(0));
    assert_eq!(sim.disks()[0].size, 2 << 30);

    let res = exec(&c, cmd::system_resource().as_str()).await;
    let res = routeros::monitor::parse_system_resource(&res.stdout).unwrap();
    assert_eq!(res.board_name.as_deref(), Some("RDS2216"));
    assert_eq!(res.version.as_deref(), Some("7.16 (stable)"));

    let dup = exec(&c, add.as_str()).await;
    let failure = routeros::command::detect_failure(&dup.stdout, &dup.stderr, dup.exit).unwrap();
    assert_eq!(failure.kind, routeros::FailureKind::AlreadyExists);

    assert_eq!(
        exec(&c, cmd::disk_remove(&slot).as_str()).await.exit,
        Some(0)
    );
    assert_eq!(
        exec(&c, cmd::file_remove(&path).as_str()).await.exit,
        Some(0)
    );
    assert!(sim.disks().is_empty() && sim.files().is_empty());
    let gone = exec(&c, cmd::disk_print_slot(&slot).as_str()).await;
    assert!(
        routeros::disk::parse_disks(&gone.stdout)
            .unwrap()
            .is_empty(),
        "legend only"
    );
}

/// Found by the 1,000-volume benchmark: listings with three-digit indexes must still parse
/// into one disk per record.
#[tokio::test]
async fn long_listings_with_wide_indexes_parse_into_every_disk() {
    let (sim, key) = sim().await;
    for i in 0..120 {
        let s = format!("pvc-{i:08x}-0000-4000-8000-{i:012x}");
        sim.run_local(&format!(
            "/disk add type=file file-path=/storage-pool/metal-csi/{s}.img file-size=1G slot={s} nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:{s}"
        ))
        .unwrap();
    }
    let c = connect(&sim, &key).await;
    let list = cmd::disk_print_slot_prefix(&Slot::new("pvc-").unwrap());
    let out = exec(&c, list.as_str()).await;
    let disks = routeros::disk::parse_disks(&out.stdout).unwrap();
    assert_eq!(disks.len(), 120);
    assert!(disks.iter().all(|d| d.size_bytes == Some(1 << 30)));
    assert_eq!(
        disks[100].slot,
        format!("pvc-{:08x}-0000-4000-8000-{:012x}", 100, 100)
    );
}

//! Node metrics: NVMe subsystem and controller state read from a fake sysfs tree at scrape time
//! (only NQNs under the managed prefix), a scan that fails or hangs reported as such instead of
//! as "nothing connected", and node events counted and forwarded by the observer.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use node::{NodeConfig, NodeObserver};
use nvme::{ManagedPrefix, Sysfs};
use observability::metrics::{Metrics, NvmeCollector};

const PREFIX: &str = "nqn.2000-02.com.mikrotik:pvc-";
const VOL1: &str = "nqn.2000-02.com.mikrotik:pvc-11111111-1111-4111-8111-111111111111";
const VOL2: &str = "nqn.2000-02.com.mikrotik:pvc-22222222-2222-4222-8222-222222222222";
const VOL3: &str = "nqn.2000-02.com.mikrotik:pvc-33333333-3333-4333-8333-333333333333";
const VOL4: &str = "nqn.2000-02.com.mikrotik:pvc-44444444-4444-4444-8444-444444444444";
const BOOT: &str = "nqn.2000-02.com.mikrotik:nixos-root";

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn write(p: &Path, s: &str) {
    fs::write(p, format!("{s}\n")).unwrap();
}

/// A sysfs tree shaped like the kernel's: real directories under `devices/`, relative symlinks
/// under `class/`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in [
            "sys/class/nvme",
            "sys/class/nvme-subsystem",
            "sys/class/block",
            "sys/devices/virtual/nvme-fabrics/ctl",
            "sys/devices/virtual/nvme-subsystem",
            "dev",
        ] {
            fs::create_dir_all(t.dir.path().join(d)).unwrap();
        }
        t
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    fn subsys_dir(&self, s: u32) -> PathBuf {
        self.root()
            .join(format!("devices/virtual/nvme-subsystem/nvme-subsys{s}"))
    }

    fn ctrl_dir(&self, c: u32) -> PathBuf {
        self.root()
            .join(format!("devices/virtual/nvme-fabrics/ctl/nvme{c}"))
    }

    fn add_subsystem(&self, s: u32, nqn: &str) {
        let d = self.subsys_dir(s);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("subsysnqn"), nqn);
        symlink(
            format!("../../devices/virtual/nvme-subsystem/nvme-subsys{s}"),
            self.root()
                .join(format!("class/nvme-subsystem/nvme-subsys{s}")),
        )
        .unwrap();
    }

    /// Controller `nvme{c}` of subsystem `s` with one plain namespace `nvme{c}n1`.
    fn add_controller(&self, c: u32, s: u32, nqn: &str, state: &str) {
        let d = self.ctrl_dir(c);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("subsysnqn"), nqn);
        write(&d.join("state"), state);
        write(&d.join("transport"), "tcp");
        write(
            &d.join("address"),
            "traddr=10.0.0.1,trsvcid=4420,src_addr=10.0.0.2",
        );
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}"),
            self.root().join(format!("class/nvme/nvme{c}")),
        )
        .unwrap();
        symlink(
            format!("../../nvme-fabrics/ctl/nvme{c}"),
            self.subsys_dir(s).join(format!("nvme{c}")),
        )
        .unwrap();
        let name = format!("nvme{c}n1");
        let ns = d.join(&name);
        fs::create_dir_all(&ns).unwrap();
        write(&ns.join("dev"), &format!("259:{c}"));
        write(&ns.join("nsid"), "1");
        symlink(
            format!("../../devices/virtual/nvme-fabrics/ctl/nvme{c}/{name}"),
            self.root().join(format!("class/block/{name}")),
        )
        .unwrap();
    }

    fn set_state(&self, c: u32, state: &str) {
        write(&self.ctrl_dir(c).join("state"), state);
    }

    fn config(&self) -> NodeConfig {
        let mut cfg = NodeConfig::new("worker-1");
        cfg.sysfs_root = self.root();
        cfg.dev_root = self.dir.path().join("dev");
        cfg.managed_prefix = PREFIX.to_string();
        cfg
    }
}

fn healthy(text: &str, health: &str) -> Option<f64> {
    sample(
        text,
        &format!(r#"rds_csi_node_nvme_subsystems{{health="{health}"}}"#),
    )
}

fn controllers(text: &str, state: &str) -> Option<f64> {
    sample(
        text,
        &format!(r#"rds_csi_node_nvme_controllers{{state="{state}"}}"#),
    )
}

#[test]
fn subsystems_and_controller_states_are_read_from_sysfs_on_every_scrape() {
    let t = Tree::new();
    // VOL1 healthy, VOL2 reconnecting, VOL3 only a leftover subsystem entry, VOL4 a controller
    // in a state this driver does not know, BOOT not ours.
    t.add_subsystem(0, VOL1);
    t.add_controller(0, 0, VOL1, "live");
    t.add_subsystem(1, VOL2);
    t.add_controller(1, 1, VOL2, "connecting");
    t.add_subsystem(2, VOL3);
    t.add_subsystem(3, VOL4);
    t.add_controller(3, 3, VOL4, "frobnicating");
    t.add_subsystem(4, BOOT);
    t.add_controller(4, 4, BOOT, "live");
    t.add_controller(5, 4, BOOT, "dead");

    let metrics = Metrics::new();
    metrics.watch_nvme(&t.config()).unwrap();

    let text = metrics.encode().unwrap();
    assert_eq!(sample(&text, "rds_csi_node_nvme_scan_success"), Some(1.0));
    for (health, want) in [("healthy", 1.0), ("recovering", 1.0), ("orphaned", 2.0)] {
        assert_eq!(healthy(&text, health), Some(want), "{health} in\n{text}");
    }
    for (state, want) in [
        ("live", 1.0),
        ("connecting", 1.0),
        ("unknown", 1.0),
        ("dead", 0.0),
        ("resetting", 0.0),
        ("new", 0.0),
        ("deleting", 0.0),
        ("deleting (no IO)", 0.0),
    ] {
        assert_eq!(controllers(&text, state), Some(want), "{state} in\n{text}");
    }

    // The kernel changes state; the next scrape says so (nothing cached, nothing to drift).
    t.set_state(0, "resetting");
    t.set_state(1, "live");
    let text = metrics.encode().unwrap();
    assert_eq!(controllers(&text, "live"), Some(1.0), "{text}");
    assert_eq!(controllers(&text, "resetting"), Some(1.0), "{text}");
    assert_eq!(controllers(&text, "connecting"), Some(0.0), "{text}");
    assert_eq!(healthy(&text, "healthy"), Some(1.0), "{text}");
    assert_eq!(healthy(&text, "recovering"), Some(1.0), "{text}");
}

#[test]
fn an_empty_node_lists_every_family_with_zero_subsystems() {
    let t = Tree::new();
    let metrics = Metrics::new();
    metrics.watch_nvme(&t.config()).unwrap();
    let text = metrics.encode().unwrap();
    for family in [
        "rds_csi_node_nvme_subsystems",
        "rds_csi_node_nvme_controllers",
        "rds_csi_node_nvme_scan_success",
    ] {
        assert!(text.contains(&format!("# TYPE {family} gauge")), "{text}");
    }
    assert_eq!(healthy(&text, "healthy"), Some(0.0), "{text}");
    assert_eq!(controllers(&text, "live"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "rds_csi_node_nvme_scan_success"), Some(1.0));
}

#[test]
fn a_failed_scan_exports_no_counts_and_says_so() {
    let t = Tree::new();
    t.add_subsystem(0, VOL1);
    t.add_controller(0, 0, VOL1, "live");
    // An attribute that cannot be read as a file (EISDIR): the scan fails.
    t.add_subsystem(1, VOL2);
    let attr = t.subsys_dir(1).join("subsysnqn");
    fs::remove_file(&attr).unwrap();
    fs::create_dir(&attr).unwrap();

    let metrics = Metrics::new();
    metrics.watch_nvme(&t.config()).unwrap();
    let text = metrics.encode().unwrap();
    assert_eq!(
        sample(&text, "rds_csi_node_nvme_scan_success"),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE rds_csi_node_nvme_subsystems gauge"),
        "{text}"
    );
    assert_eq!(healthy(&text, "healthy"), None, "{text}");
    assert_eq!(controllers(&text, "live"), None, "{text}");
}

#[test]
fn a_hanging_sysfs_does_not_hang_the_scrape_and_the_scan_recovers() {
    let t = Tree::new();
    t.add_subsystem(0, VOL1);
    t.add_controller(0, 0, VOL1, "live");
    // A FIFO with no writer: opening it blocks, like a sysfs read the kernel never answers.
    let attr = t.subsys_dir(0).join("subsysnqn");
    fs::remove_file(&attr).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&attr)
        .status()
        .unwrap();
    assert!(made.success());

    let metrics = Metrics::new();
    metrics.register_collector(Box::new(NvmeCollector::new(
        Sysfs::new(t.root(), t.dir.path().join("dev")),
        ManagedPrefix::new(PREFIX).unwrap(),
        Duration::from_millis(200),
    )));
    let success = |text: &str| sample(text, "rds_csi_node_nvme_scan_success");
    assert_eq!(success(&metrics.encode().unwrap()), Some(0.0));
    // The first scan is still stuck: the second scrape answers without starting another.
    assert_eq!(success(&metrics.encode().unwrap()), Some(0.0));

    // Release the stuck scan, then make the attribute an ordinary file again.
    let writer = {
        let attr = attr.clone();
        std::thread::spawn(move || fs::write(attr, format!("{VOL1}\n")).unwrap())
    };
    writer.join().unwrap();
    fs::remove_file(&attr).unwrap();
    write(&attr, VOL1);

    let mut last = None;
    for _ in 0..100 {
        let text = metrics.encode().unwrap();
        last = success(&text);
        if last == Some(1.0) {
            assert_eq!(controllers(&text, "live"), Some(1.0), "{text}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last, Some(1.0), "the scan never recovered");
}

#[test]
fn an_invalid_managed_prefix_is_a_config_error() {
    let t = Tree::new();
    let mut cfg = t.config();
    cfg.managed_prefix = "not-an-nqn".into();
    let err = Metrics::new().watch_nvme(&cfg).unwrap_err();
    assert!(err.to_string().contains("managed NQN prefix"), "{err}");
}

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl NodeObserver for Seen {
    fn stale_detected(&self, v: &str, _reason: &str) {
        self.0.lock().unwrap().push(format!("stale {v}"));
    }
    fn recovered(&self, v: &str, _detail: &str) {
        self.0.lock().unwrap().push(format!("recovered {v}"));
    }
    fn recovery_failed(&self, v: &str, _e: &str) {
        self.0.lock().unwrap().push(format!("failed {v}"));
    }
    fn connection_lost(&self, v: &str, _nqn: &str, _state: &str) {
        self.0.lock().unwrap().push(format!("lost {v}"));
    }
    fn connection_restored(&self, v: &str, _nqn: &str) {
        self.0.lock().unwrap().push(format!("restored {v}"));
    }
    fn stage_failed(&self, v: &str, _pvc: Option<(String, String)>, _e: &str) {
        self.0.lock().unwrap().push(format!("stage-failed {v}"));
    }
    fn nvme_connected(&self, v: &str, _nqn: &str) {
        self.0.lock().unwrap().push(format!("connected {v}"));
    }
    fn nvme_disconnected(&self, v: &str, _nqn: &str) {
        self.0.lock().unwrap().push(format!("disconnected {v}"));
    }
    fn paths_changed(
        &self,
        v: &str,
        _pvc: Option<(String, String)>,
        live: usize,
        total: usize,
        missing: &[String],
    ) {
        let missing = missing.join(",");
        self.0
            .lock()
            .unwrap()
            .push(format!("paths {v} {live}/{total} [{missing}]"));
    }
}

/// Per-volume path gauges live while the volume is staged and go with it; the counter counts
/// only crossings from full redundancy to degraded; every report is forwarded.
#[test]
fn multipath_paths_are_per_volume_gauges_removed_at_unstage() {
    let metrics = Metrics::new();
    let seen = Arc::new(Seen::default());
    let observer = metrics.node_observer(seen.clone());
    let live = |v: &str| format!("rds_csi_node_volume_paths_live{{volume_id=\"{v}\"}}");
    let total = |v: &str| format!("rds_csi_node_volume_paths{{volume_id=\"{v}\"}}");
    let lost = "rds_csi_node_volume_redundancy_lost_total";

    let text = metrics.encode().unwrap();
    assert!(
        text.contains("# TYPE rds_csi_node_volume_paths_live gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE rds_csi_node_volume_paths gauge"),
        "{text}"
    );
    assert_eq!(sample(&text, lost), Some(0.0));

    let a = "default:pvc-a";
    let b = "default:pvc-b";
    let gone = ["10.0.2.2:4420".to_string()];
    observer.paths_changed(a, None, 2, 2, &[]);
    observer.paths_changed(b, None, 1, 2, &gone);
    let text = metrics.encode().unwrap();
    assert_eq!(sample(&text, &live(a)), Some(2.0), "{text}");
    assert_eq!(sample(&text, &total(a)), Some(2.0), "{text}");
    assert_eq!(sample(&text, &live(b)), Some(1.0), "{text}");
    assert_eq!(sample(&text, lost), Some(1.0), "b was staged degraded");

    observer.paths_changed(a, None, 1, 2, &gone);
    observer.paths_changed(a, None, 0, 2, &gone);
    observer.paths_changed(a, None, 2, 2, &[]);
    observer.paths_changed(a, None, 1, 2, &gone);
    let text = metrics.encode().unwrap();
    assert_eq!(sample(&text, &live(a)), Some(1.0));
    assert_eq!(
        sample(&text, lost),
        Some(3.0),
        "two more crossings, not four reports"
    );

    observer.paths_changed(a, None, 0, 0, &[]);
    observer.paths_changed(b, None, 0, 0, &[]);
    let text = metrics.encode().unwrap();
    assert!(
        !text.contains("volume_id="),
        "unstaged volumes leave no series:\n{text}"
    );
    assert_eq!(sample(&text, lost), Some(3.0));
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[1], "paths default:pvc-b 1/2 [10.0.2.2:4420]");
    assert_eq!(seen[7], "paths default:pvc-b 0/0 []");
}

#[test]
fn node_events_are_counted_and_forwarded() {
    let metrics = Metrics::new();
    let seen = Arc::new(Seen::default());
    let observer = metrics.node_observer(seen.clone());

    let counters = [
        "rds_csi_node_nvme_connections_lost_total",
        "rds_csi_node_nvme_connections_restored_total",
        "rds_csi_node_stale_mounts_detected_total",
        "rds_csi_node_stale_mount_recoveries_total",
        "rds_csi_node_stale_mount_recovery_failures_total",
        "rds_csi_node_nvme_connects_total",
        "rds_csi_node_nvme_disconnects_total",
    ];
    let text = metrics.encode().unwrap();
    for c in counters {
        assert_eq!(sample(&text, c), Some(0.0), "{c} in\n{text}");
    }

    observer.connection_lost("v1", VOL1, "connecting");
    observer.connection_lost("v2", VOL2, "gone");
    observer.connection_restored("v1", VOL1);
    observer.stale_detected("v1", "device changed");
    observer.recovery_failed("v1", "mount: EBUSY");
    observer.recovered("v1", "remounted");
    observer.stage_failed("v3", None, "connect timed out");
    observer.nvme_connected("v4", VOL1);
    observer.nvme_connected("v5", VOL2);
    observer.nvme_disconnected("v4", VOL1);

    let text = metrics.encode().unwrap();
    for (series, want) in counters.iter().zip([2.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0]) {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    assert_eq!(
        *seen.0.lock().unwrap(),
        [
            "lost v1",
            "lost v2",
            "restored v1",
            "stale v1",
            "failed v1",
            "recovered v1",
            "stage-failed v3",
            "connected v4",
            "connected v5",
            "disconnected v4"
        ]
    );
}

//! `rds-csi selftest` as its own process against an rds-sim inside the test, over real SSH:
//! a clean run covers every command shape and leaves nothing; each output variant the parsers
//! know still passes; faults (dropped connection, disk full with errors on either stream,
//! SIGINT, SIGKILL) are reported and leave nothing behind, or are removed by the next run.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rds_sim::{OutputStyle, Sim, SimConfig};

const BIN: &str = env!("CARGO_BIN_EXE_rds-csi");

struct Rig {
    sim: Sim,
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Rig {
    async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (private_key, public_line) = rds_sim::generate_client_key().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, private_key).unwrap();
        let mut cfg = SimConfig::for_tests();
        cfg.authorized_keys = vec![public_line];
        let sim = Sim::start(cfg).await.unwrap();
        Rig { sim, dir, key }
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["selftest", "--log-level", "error"])
            .args(["--rds-address", "127.0.0.1"])
            .args(["--rds-port", &self.sim.addr().port().to_string()])
            .arg("--rds-key-file")
            .arg(&self.key)
            .args(["--rds-host-key", &self.sim.host_key_fingerprint()])
            .args(["--rds-read-timeout", "5s", "--rds-write-timeout", "5s"])
            .args(extra)
            .env_remove("RDS_ADDRESS")
            .env_remove("RDS_BACKENDS_FILE");
        c
    }

    /// Runs the selftest to the end (on a blocking thread: the simulator shares this runtime).
    async fn run(&self, extra: &[&str]) -> Output {
        let mut c = self.command(extra);
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        self.command(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn report_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Nothing with the selftest's names is left on the simulated RDS.
    fn assert_clean(&self, out: &Output) {
        let disks: Vec<String> = self.sim.disks().into_iter().map(|d| d.slot).collect();
        let files: Vec<String> = self.sim.files().into_iter().map(|f| f.path).collect();
        assert!(
            disks.is_empty() && files.is_empty(),
            "left behind: disks {disks:?} files {files:?}\n{}",
            text(out)
        );
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status word of the line for `step`.
fn status_of(out: &Output, step: &str) -> Option<String> {
    stdout(out).lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let status = w.next()?;
        (w.next()? == step).then(|| status.to_string())
    })
}

const FULL_RUN: &[&str] = &[
    "connect",
    "system-resource",
    "capacity",
    "leftovers",
    "disk-add",
    "print-slot",
    "print-pattern",
    "disk-set-grow",
    "acl-set",
    "acl-clear",
    "snapshot",
    "clone",
    "file-print",
    "file-print-image",
    "disk-remove",
    "file-remove",
    "cleanup",
];

fn assert_all_pass(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
    for step in FULL_RUN {
        assert_eq!(
            status_of(out, step).as_deref(),
            Some("PASS"),
            "step {step}:\n{}",
            text(out)
        );
    }
    assert!(
        stdout(out).contains("summary: 17 passed, 0 failed"),
        "{}",
        text(out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_sends_every_command_shape_and_leaves_nothing() {
    let rig = Rig::start().await;
    let report = rig.report_path("report.json");
    let out = rig.run(&["--report", report.to_str().unwrap()]).await;
    assert_all_pass(&out);
    rig.assert_clean(&out);

    let cmds = rig.sim.commands();
    let has = |what: &str, pred: &dyn Fn(&str) -> bool| {
        assert!(cmds.iter().any(|c| pred(c)), "no {what} among {cmds:#?}");
    };
    has("capacity query", &|c| {
        c.contains("where mount-point=\"storage-pool\"")
    });
    has("exported /disk add", &|c| {
        c.starts_with("/disk add type=file file-path=/storage-pool/metal-csi/rds-csi-selftest/")
            && c.contains("file-size=1G")
            && c.contains("nvme-tcp-export=yes nvme-tcp-server-port=4420")
    });
    has("snapshot copy-from", &|c| {
        c.starts_with("/disk add type=file copy-from=[find slot=rds-csi-selftest-")
            && !c.contains("nvme")
            && !c.contains("file-size")
    });
    has("clone copy-from with export", &|c| {
        c.contains("copy-from=[find slot=rds-csi-selftest-")
            && c.contains("-snap]")
            && c.contains("nvme-tcp-export=yes")
    });
    has("print by slot", &|c| {
        c.starts_with("/disk print detail where slot=rds-csi-selftest-")
    });
    has("print by pattern", &|c| {
        c.starts_with("/disk print detail where slot~\"^rds-csi-selftest-")
    });
    has("grow", &|c| {
        c.starts_with("/disk set [find slot=") && c.ends_with("file-size=1088M")
    });
    has("ACL set", &|c| {
        c.contains("nvme-tcp-server-allow-host-name=\"nqn.2014-08.org.nvmexpress:uuid:")
    });
    has("ACL clear", &|c| {
        c.ends_with("nvme-tcp-server-allow-host-name=\"\"")
    });
    has("file print", &|c| {
        c.starts_with("/file print detail where name~\"^storage-pool/metal-csi/rds-csi-selftest/\"")
    });
    has("file print image", &|c| {
        c.starts_with("/file print detail where name~\"/rds-csi-selftest-")
    });
    has("file remove", &|c| {
        c.starts_with("/file remove [find name=\"storage-pool/metal-csi/rds-csi-selftest/")
    });
    has("disk remove", &|c| {
        c.starts_with("/disk remove [find slot=rds-csi-selftest-")
    });
    assert!(
        cmds.iter().all(|c| !c.contains("pvc-")),
        "the selftest never names a driver volume: {cmds:#?}"
    );

    let raw = std::fs::read_to_string(&report).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["summary"]["failed"], 0);
    let steps = doc["steps"].as_array().unwrap();
    let add = steps.iter().find(|s| s["step"] == "print-slot").unwrap();
    let stdout = add["commands"][0]["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("Flags:") && stdout.contains("size=1 073 741 824"),
        "the report keeps RouterOS's raw output: {stdout}"
    );
    for secret in ["127.0.0.1", "SHA256:", &rig.sim.addr().to_string()] {
        assert!(!raw.contains(secret), "{secret} in the report");
    }
    assert!(
        raw.contains("<rds-address>") && raw.contains("<host-nqn>"),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_sends_print_commands_only() {
    let rig = Rig::start().await;
    let out = rig.run(&["--read-only"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let cmds = rig.sim.commands();
    assert!(!cmds.is_empty());
    for c in &cmds {
        let verb = c.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            c.starts_with("/system resource print") || verb == "print",
            "{c} in a read-only run"
        );
    }
    assert_eq!(status_of(&out, "cleanup"), None, "{}", text(&out));
    rig.assert_clean(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_variant_passes() {
    for style in [
        OutputStyle::Terminal,
        OutputStyle::Narrow,
        OutputStyle::OneLine,
    ] {
        let rig = Rig::start().await;
        rig.sim.faults().output_style(style);
        let out = rig.run(&[]).await;
        assert_all_pass(&out);
        rig.assert_clean(&out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_is_reported_from_either_stream_and_nothing_is_left() {
    for on_stderr in [false, true] {
        let rig = Rig::start().await;
        rig.sim.faults().disk_full(true);
        rig.sim.faults().errors_on_stderr(on_stderr);
        let out = rig.run(&[]).await;
        assert!(!out.status.success(), "{}", text(&out));
        assert_eq!(
            status_of(&out, "disk-add").as_deref(),
            Some("FAIL"),
            "{}",
            text(&out)
        );
        let line = stdout(&out)
            .lines()
            .find(|l| l.starts_with("FAIL disk-add"))
            .unwrap()
            .to_string();
        assert!(
            line.contains("not enough space") && line.contains("out of space"),
            "{line}"
        );
        assert_eq!(status_of(&out, "snapshot").as_deref(), Some("SKIP"));
        assert_eq!(
            status_of(&out, "cleanup").as_deref(),
            Some("PASS"),
            "{}",
            text(&out)
        );
        rig.assert_clean(&out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_mid_run_are_reported_and_cleaned_up() {
    // Before the grow is applied; and after the snapshot's add was applied (its answer lost).
    for (fault, step) in [
        ("/disk set", "disk-set-grow"),
        ("/disk add type=file copy-from!", "snapshot"),
    ] {
        let rig = Rig::start().await;
        rig.sim.faults().drop_next(fault);
        let out = rig.run(&[]).await;
        assert!(!out.status.success(), "{}", text(&out));
        assert_eq!(
            status_of(&out, step).as_deref(),
            Some("FAIL"),
            "{fault}: {}",
            text(&out)
        );
        assert_eq!(
            status_of(&out, "cleanup").as_deref(),
            Some("PASS"),
            "{}",
            text(&out)
        );
        rig.assert_clean(&out);
    }
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_run_cleans_up_before_exiting() {
    let rig = Rig::start().await;
    rig.sim.faults().set_latency(Duration::from_millis(150));
    let child = rig.spawn(&[]);
    let sim = &rig.sim;
    wait_for("the snapshot's add", Duration::from_secs(30), || {
        sim.commands().iter().any(|c| c.contains("copy-from"))
    })
    .await;
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = finish(child).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        status_of(&out, "interrupted").as_deref(),
        Some("FAIL"),
        "{}",
        text(&out)
    );
    assert_eq!(
        status_of(&out, "cleanup").as_deref(),
        Some("PASS"),
        "{}",
        text(&out)
    );
    rig.assert_clean(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_run_are_removed_by_the_next_and_nothing_else_is_touched() {
    let rig = Rig::start().await;
    // Not ours although it shares the directory name's neighbourhood: a driver volume.
    rig.sim
        .run_local("/disk add type=file file-path=/storage-pool/metal-csi/pvc-1.img file-size=1G slot=pvc-1 nvme-tcp-export=yes nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-1")
        .unwrap();
    rig.sim.faults().set_latency(Duration::from_millis(100));
    let mut child = rig.spawn(&[]);
    let sim = &rig.sim;
    wait_for("the clone's add", Duration::from_secs(30), || {
        sim.disks().len() >= 3
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    let _ = finish(child).await;
    rig.sim.faults().set_latency(Duration::ZERO);
    let ours = |sim: &Sim| {
        sim.disks()
            .iter()
            .filter(|d| d.slot.starts_with("rds-csi-selftest-"))
            .count()
    };
    assert!(ours(&rig.sim) >= 2);

    // A run right after refuses: the leftovers are young enough to be a run still going.
    let out = rig.run(&[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        status_of(&out, "leftovers").as_deref(),
        Some("FAIL"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("refusing to start"), "{}", text(&out));
    assert!(ours(&rig.sim) >= 2, "a refusing run removes nothing");

    let out = rig.run(&["--leftover-grace", "0s"]).await;
    assert_all_pass(&out);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("PASS leftovers")
                && l.contains("removed what an earlier run left")),
        "{}",
        text(&out)
    );
    assert_eq!(ours(&rig.sim), 0, "{}", text(&out));
    let left: Vec<_> = rig.sim.disks().into_iter().map(|d| d.slot).collect();
    assert_eq!(left, ["pvc-1"], "the driver's volume is untouched");
    let files: Vec<_> = rig.sim.files().into_iter().map(|f| f.path).collect();
    assert_eq!(files, ["/storage-pool/metal-csi/pvc-1.img"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_disk_with_the_prefix_makes_it_refuse_and_stay_untouched() {
    let rig = Rig::start().await;
    rig.sim
        .run_local("/disk add type=file file-path=/storage-pool/metal-csi/mine.img file-size=1G slot=rds-csi-selftest-mine")
        .unwrap();
    let out = rig.run(&["--leftover-grace", "0s"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("refusing to start")
            && stdout(&out).contains("rds-csi-selftest-mine"),
        "{}",
        text(&out)
    );
    let cmds = rig.sim.commands();
    assert!(
        cmds.iter()
            .all(|c| !c.starts_with("/disk add") && !c.contains("remove")),
        "nothing created or removed: {cmds:#?}"
    );
    assert_eq!(rig.sim.disks().len(), 1);
    assert_eq!(rig.sim.files().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_host_key_is_refused_before_any_command() {
    let rig = Rig::start().await;
    let mut c = Command::new(BIN);
    c.args(["selftest", "--rds-address", "127.0.0.1"])
        .args(["--rds-port", &rig.sim.addr().port().to_string()])
        .arg("--rds-key-file")
        .arg(&rig.key)
        .env_remove("RDS_HOST_KEY")
        .env_remove("RDS_INSECURE_SKIP_VERIFY");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host key verification is not configured"),
        "{}",
        text(&out)
    );
    assert!(rig.sim.commands().is_empty());
}

/// `--report -` for a controller image without a shell: the JSON alone on stdout, the
/// transcript on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_to_stdout_keeps_the_transcript_on_stderr() {
    let rig = Rig::start().await;
    let out = rig.run(&["--read-only", "--report", "-"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["read_only"], true);
    assert!(doc["steps"].as_array().unwrap().len() >= 4);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PASS capacity") && err.contains("summary: "),
        "{err}"
    );
}

/// Firmware that silently ignores the host ACL property: a warning (hostFencing is opt-in), and
/// the snapshot and clone shapes are still tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_host_acl_warns_and_the_run_goes_on() {
    let rig = Rig::start().await;
    rig.sim.faults().set_latency(Duration::from_millis(100));
    let child = rig.spawn(&[]);
    let sim = &rig.sim;
    // The grow is also a `/disk set`: arm the rewrite once the grow's verifying print arrived.
    wait_for("the grow and its print", Duration::from_secs(30), || {
        let cmds = sim.commands();
        cmds.iter()
            .position(|c| c.ends_with("file-size=1088M"))
            .is_some_and(|i| cmds[i..].iter().any(|c| c.starts_with("/disk print")))
    })
    .await;
    rig.sim.faults().rewrite_next(
        "/disk set",
        "nvme-tcp-server-allow-host-name=\"nqn",
        "comment=\"nqn",
    );
    let out = finish(child).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        status_of(&out, "acl-set").as_deref(),
        Some("WARN"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("leave it off"), "{}", text(&out));
    for step in ["acl-clear", "snapshot", "clone", "disk-remove", "cleanup"] {
        assert_eq!(
            status_of(&out, step).as_deref(),
            Some("PASS"),
            "{step}: {}",
            text(&out)
        );
    }
    assert!(stdout(&out).contains("1 warnings"), "{}", text(&out));
    rig.assert_clean(&out);
}

/// Nothing listens: `connect` fails with the cause, the rest is skipped, and no cleanup round
/// repeats the same connection errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_rds_fails_at_connect_and_sends_nothing() {
    let rig = Rig::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Command::new(BIN);
    c.args([
        "selftest",
        "--log-level",
        "error",
        "--rds-address",
        "127.0.0.1",
    ])
    .args(["--rds-port", &port.to_string()])
    .arg("--rds-key-file")
    .arg(&rig.key)
    .args(["--rds-host-key", &rig.sim.host_key_fingerprint()])
    .args(["--rds-connect-timeout", "2s"]);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        status_of(&out, "connect").as_deref(),
        Some("FAIL"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("connection trouble"),
        "{}",
        text(&out)
    );
    assert_eq!(status_of(&out, "disk-add").as_deref(), Some("SKIP"));
    let cleanup = stdout(&out)
        .lines()
        .find(|l| l.starts_with("PASS cleanup"))
        .map(str::to_string);
    assert!(
        cleanup.is_some_and(|l| l.contains("nothing to clean")),
        "{}",
        text(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// The overall deadline ends the steps wherever they are; the cleanup still removes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overall_deadline_stops_the_steps_and_cleans_up() {
    let rig = Rig::start().await;
    rig.sim.faults().set_latency(Duration::from_millis(200));
    let out = rig.run(&["--timeout", "2s"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("FAIL interrupted"))
        .map(str::to_string);
    assert!(
        line.is_some_and(|l| l.contains("did not finish within --timeout 2s")),
        "{}",
        text(&out)
    );
    assert_eq!(
        status_of(&out, "cleanup").as_deref(),
        Some("PASS"),
        "{}",
        text(&out)
    );
    assert!(
        rig.sim
            .commands()
            .iter()
            .any(|c| c.starts_with("/disk add")),
        "the deadline fell after something was created"
    );
    rig.assert_clean(&out);
}

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use routeros::{Nqn, NvmeExport, Port};

use super::*;
use crate::testing::ScriptedExec;

const GIB: u64 = 1 << 30;
const POOL: &str = "/storage-pool/metal-csi";
const NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik:";

fn slot(s: &str) -> Slot {
    Slot::new(s).unwrap()
}

fn spec(name: &str, size: u64) -> DiskAdd {
    DiskAdd {
        slot: slot(name),
        file_path: FilePath::new(&format!("{POOL}/{name}.img")).unwrap(),
        file_size: Some(ByteSize(size)),
        nvme: Some(NvmeExport {
            port: Port::new(4420).unwrap(),
            nqn: Nqn::new(&format!("{NQN_PREFIX}{name}")).unwrap(),
        }),
        copy_from: None,
    }
}

/// One `/disk print detail` record in the shape RouterOS prints it.
fn disk_record(name: &str, path: &str, size: u64) -> String {
    format!(
        "slot=\"{name}\" type=\"file\" file-path=\"{path}\" file-size={size} size={size} \
         nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"{NQN_PREFIX}{name}\"\n"
    )
}

fn disk_print(name: &str, size: u64) -> String {
    disk_record(name, &format!("{POOL}/{name}.img"), size)
}

fn transport(verb: &'static str) -> RdsError {
    RdsError::Transport {
        verb,
        reason: "connection reset".into(),
    }
}

fn failure_on(stdout: &str, stderr: &str) -> ExecOutput {
    ExecOutput {
        stdout: stdout.into(),
        stderr: stderr.into(),
        exit_status: Some(1),
    }
}

fn client(exec: &Arc<ScriptedExec>) -> RdsClient {
    RdsClient::new(Arc::clone(exec) as Arc<dyn Exec>, ClientConfig::default())
}

/// Command kinds in the order they were sent, so tests read as the protocol they assert.
fn kinds(exec: &ScriptedExec) -> Vec<&'static str> {
    exec.lines()
        .iter()
        .map(|l| {
            let l = l.trim_start();
            if l.starts_with("/disk add") {
                "add"
            } else if l.starts_with("/disk print") {
                "print"
            } else if l.starts_with("/disk set") {
                "set"
            } else if l.starts_with("/disk remove") {
                "remove"
            } else if l.starts_with("/file remove") {
                "file-remove"
            } else if l.starts_with("/file print") {
                "file-print"
            } else {
                "other"
            }
        })
        .collect()
}

#[tokio::test]
async fn failure_on_stdout_is_detected_and_classified() {
    let exec = Arc::new(ScriptedExec::new());
    exec.output(failure_on("failure: not enough space\n", ""))
        .ok("");
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Exhausted, "{err}");
    assert_eq!(kinds(&exec), ["add", "print"]);
}

#[tokio::test]
async fn failure_on_stderr_is_detected_even_with_exit_zero() {
    let exec = Arc::new(ScriptedExec::new());
    exec.output(ExecOutput {
        stdout: String::new(),
        stderr: "failure: not enough space\n".into(),
        exit_status: Some(0),
    })
    .ok("");
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Exhausted, "{err}");
}

#[tokio::test]
async fn create_happy_path_is_two_round_trips() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("").ok(&disk_print("pvc-1", GIB));
    let c = client(&exec);
    let out = c.create_disk(&spec("pvc-1", GIB)).await.unwrap();
    assert!(out.created);
    assert_eq!(out.disk.slot, "pvc-1");
    assert_eq!(kinds(&exec), ["add", "print"]);
    assert_eq!(c.round_trips(), 2);
    let d = exec.deadlines();
    assert_eq!(d, [c.config().write_timeout, c.config().read_timeout]);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_add_is_resolved_by_print_not_repeated_blindly() {
    let exec = Arc::new(ScriptedExec::new());
    exec.err(transport("disk-add"))
        .ok("")
        .ok("")
        .ok(&disk_print("pvc-1", GIB));
    let out = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap();
    assert!(out.created, "the second add was applied and verified");
    assert_eq!(kinds(&exec), ["add", "print", "add", "print"]);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_add_that_was_applied_returns_existing() {
    let exec = Arc::new(ScriptedExec::new());
    exec.err(RdsError::Timeout {
        verb: "disk-add",
        after: Duration::from_secs(60),
    })
    .ok(&disk_print("pvc-1", GIB));
    let out = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap();
    assert!(!out.created);
    assert_eq!(out.disk.slot, "pvc-1");
    assert_eq!(kinds(&exec), ["add", "print"]);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_add_gives_up_after_max_attempts() {
    let exec = Arc::new(ScriptedExec::new());
    for _ in 0..4 {
        exec.err(transport("disk-add")).ok("");
    }
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert!(matches!(err, RdsError::Transport { .. }), "{err}");
    assert_eq!(
        kinds(&exec),
        [
            "add", "print", "add", "print", "add", "print", "add", "print"
        ]
    );
    assert_eq!(exec.remaining(), 0);
}

#[tokio::test]
async fn refused_add_of_existing_slot_returns_it_uncreated() {
    let exec = Arc::new(ScriptedExec::new());
    exec.output(failure_on("failure: volume already exists\n", ""))
        .ok(&disk_print("pvc-1", GIB));
    let out = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap();
    assert!(!out.created);
    assert_eq!(kinds(&exec), ["add", "print"]);
}

#[tokio::test]
async fn refused_add_without_disk_returns_the_refusal() {
    let exec = Arc::new(ScriptedExec::new());
    exec.output(failure_on(
        "failure: invalid value for argument file-size\n",
        "",
    ))
    .ok("");
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert!(matches!(err, RdsError::Failure { .. }), "{err}");
    assert_eq!(kinds(&exec), ["add", "print"]);
}

#[tokio::test]
async fn mismatching_disk_after_add_is_removed_with_its_file() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("")
        .ok(&disk_record("pvc-1", "/storage-pool/other/pvc-1.img", GIB))
        .ok("")
        .ok("");
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert!(matches!(err, RdsError::Verify(_)), "{err}");
    assert!(err.to_string().contains("file path"), "{err}");
    assert_eq!(kinds(&exec), ["add", "print", "remove", "file-remove"]);
    let lines = exec.lines();
    assert!(lines[3].contains("pvc-1.img"), "{}", lines[3]);
}

#[tokio::test]
async fn undersized_disk_after_add_is_removed() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("").ok(&disk_print("pvc-1", GIB / 2)).ok("").ok("");
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("size"), "{err}");
    assert_eq!(kinds(&exec), ["add", "print", "remove", "file-remove"]);
}

#[tokio::test]
async fn missing_disk_after_add_is_a_verify_error_with_cleanup() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("")
        .ok("")
        .output(failure_on("failure: no such item\n", ""))
        .ok("");
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert!(matches!(err, RdsError::Verify(_)), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(kinds(&exec), ["add", "print", "remove", "file-remove"]);
}

#[tokio::test(start_paused = true)]
async fn verify_transport_error_removes_nothing() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("");
    for _ in 0..4 {
        exec.err(transport("disk-print"));
    }
    let err = client(&exec)
        .create_disk(&spec("pvc-1", GIB))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport, "{err}");
    assert_eq!(kinds(&exec), ["add", "print", "print", "print", "print"]);
}

#[tokio::test(start_paused = true)]
async fn prints_are_retried_with_backoff_after_transport_errors() {
    let exec = Arc::new(ScriptedExec::new());
    exec.err(transport("disk-print"))
        .err(RdsError::Timeout {
            verb: "disk-print",
            after: Duration::from_secs(10),
        })
        .ok(&disk_print("pvc-1", GIB));
    let c = client(&exec);
    let started = tokio::time::Instant::now();
    let disk = c.get_disk(&slot("pvc-1")).await.unwrap();
    assert_eq!(disk.map(|d| d.slot).as_deref(), Some("pvc-1"));
    assert_eq!(c.round_trips(), 3);
    // Virtual clock: the two backoffs (200 ms and 400 ms, each -20% at worst) really slept.
    assert!(
        started.elapsed() >= Duration::from_millis(480),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn prints_give_up_after_max_attempts() {
    let exec = Arc::new(ScriptedExec::new());
    for _ in 0..5 {
        exec.err(transport("disk-print"));
    }
    let err = client(&exec).get_disk(&slot("pvc-1")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(exec.lines().len(), 4);
    assert_eq!(exec.remaining(), 1);
}

#[tokio::test]
async fn auth_and_host_key_errors_are_not_retried() {
    for e in [
        RdsError::Auth {
            addr: "a".into(),
            user: "u".into(),
        },
        RdsError::HostKeyMismatch {
            addr: "a".into(),
            expected: "x".into(),
            got: "y".into(),
        },
    ] {
        let exec = Arc::new(ScriptedExec::new());
        exec.err(e).ok("");
        let err = client(&exec).get_disk(&slot("pvc-1")).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transport);
        assert_eq!(exec.lines().len(), 1, "{err}");
    }
}

#[tokio::test]
async fn get_disk_requires_the_exact_slot() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&disk_print("pvc-10", GIB));
    assert!(
        client(&exec)
            .get_disk(&slot("pvc-1"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn list_disks_keeps_only_the_prefix() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&format!(
        "{}{}",
        disk_print("pvc-1", GIB),
        disk_print("snap-1", GIB)
    ));
    let disks = client(&exec).list_disks(&slot("pvc-")).await.unwrap();
    let slots: Vec<_> = disks.iter().map(|d| d.slot.as_str()).collect();
    assert_eq!(slots, ["pvc-1"]);
}

#[tokio::test]
async fn resize_never_shrinks() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&disk_print("pvc-1", 10 * GIB));
    let err = client(&exec)
        .resize_disk(&slot("pvc-1"), ByteSize(5 * GIB))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Rejected);
    assert!(
        err.to_string().contains("shrinking is not supported"),
        "{err}"
    );
    assert!(err.to_string().contains(&(10 * GIB).to_string()), "{err}");
    assert_eq!(kinds(&exec), ["print"]);
}

#[tokio::test]
async fn resize_to_same_size_sends_no_set() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&disk_print("pvc-1", 10 * GIB));
    let disk = client(&exec)
        .resize_disk(&slot("pvc-1"), ByteSize(10 * GIB))
        .await
        .unwrap();
    assert_eq!(disk.capacity_bytes(), Some(10 * GIB));
    assert_eq!(kinds(&exec), ["print"]);
}

#[tokio::test]
async fn resize_grows_and_verifies() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&disk_print("pvc-1", 10 * GIB))
        .ok("")
        .ok(&disk_print("pvc-1", 20 * GIB));
    let disk = client(&exec)
        .resize_disk(&slot("pvc-1"), ByteSize(20 * GIB))
        .await
        .unwrap();
    assert_eq!(disk.capacity_bytes(), Some(20 * GIB));
    assert_eq!(kinds(&exec), ["print", "set", "print"]);
}

#[tokio::test]
async fn resize_that_did_not_take_is_a_verify_error() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&disk_print("pvc-1", 10 * GIB))
        .ok("")
        .ok(&disk_print("pvc-1", 10 * GIB));
    let err = client(&exec)
        .resize_disk(&slot("pvc-1"), ByteSize(20 * GIB))
        .await
        .unwrap_err();
    assert!(matches!(err, RdsError::Verify(_)), "{err}");
}

#[tokio::test]
async fn resize_of_missing_disk_is_not_found() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("");
    let err = client(&exec)
        .resize_disk(&slot("pvc-1"), ByteSize(GIB))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
}

#[tokio::test]
async fn delete_of_missing_disk_is_idempotent() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("");
    let out = client(&exec).delete_disk(&slot("pvc-1")).await.unwrap();
    assert_eq!(
        out,
        DeleteOutcome {
            existed: false,
            leftover_file: None
        }
    );
    assert_eq!(kinds(&exec), ["print"]);
}

#[tokio::test]
async fn delete_removes_disk_then_file() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&disk_print("pvc-1", GIB)).ok("").ok("");
    let out = client(&exec).delete_disk(&slot("pvc-1")).await.unwrap();
    assert_eq!(
        out,
        DeleteOutcome {
            existed: true,
            leftover_file: None
        }
    );
    assert_eq!(kinds(&exec), ["print", "remove", "file-remove"]);
    assert!(exec.lines()[2].contains("pvc-1.img"));
}

#[tokio::test]
async fn delete_tolerates_no_such_item_and_reports_leftover_file() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(&disk_print("pvc-1", GIB))
        .output(failure_on("failure: no such item\n", ""))
        .output(failure_on("", "failure: file is busy\n"));
    let out = client(&exec).delete_disk(&slot("pvc-1")).await.unwrap();
    assert!(out.existed);
    assert_eq!(
        out.leftover_file.as_deref(),
        Some("/storage-pool/metal-csi/pvc-1.img")
    );
}

#[tokio::test(start_paused = true)]
async fn transport_error_on_delete_print_is_an_error_not_success() {
    let exec = Arc::new(ScriptedExec::new());
    for _ in 0..4 {
        exec.err(transport("disk-print"));
    }
    let err = client(&exec).delete_disk(&slot("pvc-1")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert!(
        kinds(&exec).iter().all(|k| *k == "print"),
        "nothing removed"
    );
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(&'static str, &'static str)>>);

impl CommandObserver for Recorder {
    fn on_command(&self, event: &CommandEvent) {
        self.0.lock().unwrap().push((event.verb, event.outcome));
    }
}

#[tokio::test(start_paused = true)]
async fn observer_sees_every_attempt_with_its_outcome() {
    let exec = Arc::new(ScriptedExec::new());
    exec.err(RdsError::Timeout {
        verb: "disk-print",
        after: Duration::from_secs(1),
    })
    .err(transport("disk-print"))
    .ok(&disk_print("pvc-1", GIB))
    .output(failure_on("failure: not enough space\n", ""))
    .ok("");
    let recorder = Arc::new(Recorder::default());
    let c = client(&exec).with_observer(Arc::clone(&recorder) as Arc<dyn CommandObserver>);
    c.get_disk(&slot("pvc-1")).await.unwrap();
    c.create_disk(&spec("pvc-2", GIB)).await.unwrap_err();
    let outcomes: Vec<_> = recorder.0.lock().unwrap().iter().map(|(_, o)| *o).collect();
    assert_eq!(outcomes, ["timeout", "transport", "ok", "failure", "ok"]);
}

#[tokio::test]
async fn list_files_keeps_only_entries_under_the_directory() {
    let exec = Arc::new(ScriptedExec::new());
    exec.ok(
        " 0   name=storage-pool/metal-csi/pvc-1.img type=.img file size=1073741824\n\
         \x20 1   name=storage-pool/metal-csi-other/x.img type=.img file size=1\n",
    );
    let files = client(&exec)
        .list_files(&FilePath::new(POOL).unwrap())
        .await
        .unwrap();
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["/storage-pool/metal-csi/pvc-1.img"]);
}

#[tokio::test]
async fn image_files_keeps_only_slot_image_names() {
    let exec = Arc::new(ScriptedExec::new());
    // Records separated by blank lines, as RouterOS prints a listing.
    exec.ok(concat!(
        " 0 name=storage-pool/metal-csi/pvc-1.img type=.img file size=1073741824\n\n",
        " 1 name=storage-pool/other/pvc-1.img.bak type=.bak file size=1\n\n",
        " 2 name=storage-pool/other/pvc-1.img type=directory\n\n",
        " 3 name=storage-pool/metal-csi/xpvc-1.img type=.img file size=1\n\n",
        " 4 name=storage-pool/metal-csi/snap-9.src-pvc-1.t-1.img type=.img file size=1\n\n",
        " 5 name=storage-pool/elsewhere/pvc-1.img type=.img file size=1\n\n",
        " 6 name=storage-pool/metal-csi/pvc-1.hf.img type=.img file size=1\n\n",
        " 7 name=storage-pool/metal-csi/pvc-10.img type=.img file size=1\n\n",
        " 8 name=storage-pool/metal-csi/pvc-1..img.bak type=.bak file size=1\n",
    ));
    let files = client(&exec).image_files(&slot("pvc-1")).await.unwrap();
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "/storage-pool/metal-csi/pvc-1.img",
            "/storage-pool/elsewhere/pvc-1.img",
            "/storage-pool/metal-csi/pvc-1.hf.img"
        ],
        "<slot>.img or <slot>.<tags>.img, never a directory; which tags and directories count is the caller's call"
    );
    assert_eq!(
        exec.lines(),
        ["/file print detail where name~\"/pvc-1[.]\""]
    );
}

#[tokio::test(start_paused = true)]
async fn image_files_transport_error_is_an_error_not_an_empty_list() {
    let exec = Arc::new(ScriptedExec::new());
    for _ in 0..4 {
        exec.err(transport("file-print"));
    }
    let err = client(&exec).image_files(&slot("pvc-1")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
}

#[test]
fn only_add_is_unsafe_to_retry() {
    let s = slot("pvc-1");
    assert!(retry_safe(&command::disk_print_slot(&s)));
    assert!(retry_safe(&command::disk_remove(&s)));
    assert!(retry_safe(&command::disk_set_size(&s, ByteSize(GIB))));
    assert!(!retry_safe(&command::disk_add(&spec("pvc-1", GIB))));
}

/// gRPC handlers run on a multi-threaded runtime: every operation's future must be `Send`.
#[test]
fn operation_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let exec = Arc::new(ScriptedExec::new());
    let c = client(&exec);
    let s = slot("pvc-1");
    let add = spec("pvc-1", GIB);
    let dir = FilePath::new(POOL).unwrap();
    let mp = MountPoint::new("storage-pool").unwrap();
    assert_send(&c.get_disk(&s));
    assert_send(&c.list_disks(&s));
    assert_send(&c.create_disk(&add));
    assert_send(&c.resize_disk(&s, ByteSize(GIB)));
    assert_send(&c.delete_disk(&s));
    assert_send(&c.remove_file(&dir));
    assert_send(&c.list_files(&dir));
    assert_send(&c.image_files(&s));
    assert_send(&c.capacity(&mp));
    assert_send(&c.system_resource());
    assert_send(&c.ping());
}

#[tokio::test]
async fn set_allowed_host_verifies_what_the_rds_prints() {
    let host = HostNqn::new("nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e")
        .unwrap();
    let with = |acl: &str| {
        format!(
            "{} nvme-tcp-server-allow-host-name=\"{acl}\"\n",
            disk_print("pvc-1", GIB).trim_end()
        )
    };
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("").ok(&with(host.as_str()));
    let disk = client(&exec)
        .set_allowed_host(&slot("pvc-1"), Some(&host))
        .await
        .unwrap();
    assert_eq!(disk.allow_host.as_deref(), Some(host.as_str()));
    assert!(exec.lines()[0].ends_with(&format!("nvme-tcp-server-allow-host-name=\"{host}\"")));

    // Firmware that ignored the property: the set "succeeded" but the ACL is still open.
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("").ok(&with(""));
    let e = client(&exec)
        .set_allowed_host(&slot("pvc-1"), Some(&host))
        .await
        .unwrap_err();
    assert!(matches!(e, RdsError::Verify(_)), "{e}");

    // A slot that vanished: RouterOS ignores the set, the print finds nothing.
    let exec = Arc::new(ScriptedExec::new());
    exec.ok("").ok("");
    let e = client(&exec)
        .set_allowed_host(&slot("pvc-1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
}

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nvme::{ConnectMethod, ConnectOutcome, ConnectParams, ErrorClass, Initiator, TargetAddress};
use support::*;

/// Writing a script and executing it while another test thread forks can fail with ETXTBSY;
/// these tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A stand-in `nvme` that records its arguments one per line, prints `output`, exits `code`.
fn fake_nvme(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("nvme");
    let args = dir.join("args");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{}'; done\n{body}\n",
            args.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn initiator(s: &FakeSys, program: PathBuf, timeout: Duration) -> Initiator {
    let mut cfg = config(s);
    cfg.method = ConnectMethod::NvmeCli { program };
    cfg.connect_timeout = timeout;
    Initiator::new(cfg, host())
}

fn params() -> ConnectParams {
    ConnectParams::new(nqn(VOL1), TargetAddress::parse("10.0.0.1", "4420").unwrap())
}

#[tokio::test]
async fn cli_connect_passes_typed_arguments_and_finds_controller() {
    let _g = SERIAL.lock().await;
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(2, 0, VOL1, "live", "10.0.0.1", 4420);
    let prog = fake_nvme(s.dir.path(), "exit 0");
    let out = initiator(&s, prog, Duration::from_secs(10))
        .connect(&params())
        .await
        .unwrap();
    assert_eq!(
        out,
        ConnectOutcome::Connected {
            controller: Some("nvme2".into())
        }
    );
    let args = std::fs::read_to_string(s.dir.path().join("args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args, params().nvme_cli_args(&host()));
}

#[tokio::test]
async fn cli_already_connected_is_success_when_sysfs_confirms() {
    let _g = SERIAL.lock().await;
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    let prog = fake_nvme(
        s.dir.path(),
        "echo 'Failed to write to /dev/nvme-fabrics: Operation already in progress' >&2; exit 114",
    );
    let out = initiator(&s, prog, Duration::from_secs(10))
        .connect(&params())
        .await
        .unwrap();
    assert_eq!(
        out,
        ConnectOutcome::AlreadyConnected {
            controllers: vec!["nvme0".into()]
        }
    );
}

#[tokio::test]
async fn cli_failure_carries_command_and_output() {
    let _g = SERIAL.lock().await;
    let s = FakeSys::new();
    let prog = fake_nvme(
        s.dir.path(),
        "echo 'could not add new controller: invalid arguments/configuration' >&2; exit 1",
    );
    let err = initiator(&s, prog.clone(), Duration::from_secs(10))
        .connect(&params())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::KernelRefused);
    let text = err.to_string();
    assert!(text.contains(&prog.display().to_string()), "{text}");
    assert!(text.contains("invalid arguments"), "{text}");
    assert!(text.contains("exit code 1"), "{text}");
}

#[tokio::test]
async fn cli_hang_is_killed_at_the_deadline() {
    let _g = SERIAL.lock().await;
    let s = FakeSys::new();
    let prog = fake_nvme(s.dir.path(), "exec sleep 600");
    let err = initiator(&s, prog.clone(), Duration::from_millis(200))
        .connect(&params())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert!(
        err.to_string()
            .contains(&format!("{} connect", prog.display())),
        "{err}"
    );
}

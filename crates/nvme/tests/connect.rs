#![allow(clippy::unwrap_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nvme::{
    ConnectOutcome, ConnectParams, ErrorClass, FabricsDevice, FabricsFile, Initiator, NvmeError,
    TargetAddress,
};
use support::*;

fn params(n: &str) -> ConnectParams {
    ConnectParams::new(nqn(n), TargetAddress::parse("10.0.0.1", "4420").unwrap())
}

/// Regular file standing in for /dev/nvme-fabrics: the options overwrite the first bytes, and
/// the single read that follows returns what the test placed after them.
fn scripted_file(path: &Path, options_len: usize, answer: &str) {
    let mut content = vec![b'#'; options_len];
    content.extend_from_slice(answer.as_bytes());
    std::fs::write(path, content).unwrap();
}

#[tokio::test]
async fn connect_writes_options_and_reads_instance() {
    let s = FakeSys::new();
    let cfg = config(&s);
    let p = params(VOL1);
    let expected = p.fabrics_options(&host());
    scripted_file(&cfg.fabrics_path, expected.len(), "instance=3,cntlid=1\n");
    let ini = Initiator::new(cfg.clone(), host());

    let out = ini.connect(&p).await.unwrap();
    assert_eq!(
        out,
        ConnectOutcome::Connected {
            controller: Some("nvme3".into())
        }
    );
    let written = std::fs::read_to_string(&cfg.fabrics_path).unwrap();
    assert!(written.starts_with(&expected), "{written}");
    assert!(expected.contains(&format!(",nqn={VOL1},")));
    assert!(expected.contains(",hostid=7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f,"));
}

#[tokio::test]
async fn garbage_answer_is_an_error_naming_the_file() {
    let s = FakeSys::new();
    let cfg = config(&s);
    let p = params(VOL1);
    scripted_file(
        &cfg.fabrics_path,
        p.fabrics_options(&host()).len(),
        "no such thing",
    );
    let err = Initiator::new(cfg.clone(), host())
        .connect(&p)
        .await
        .unwrap_err();
    assert!(matches!(err, NvmeError::UnexpectedAnswer { .. }), "{err}");
    assert!(err.to_string().contains("nvme-fabrics"), "{err}");
}

#[tokio::test]
async fn missing_fabrics_file_says_so() {
    let s = FakeSys::new();
    let err = Initiator::new(config(&s), host())
        .connect(&params(VOL1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nvme-tcp loaded"), "{err}");
    assert_ne!(err.class(), ErrorClass::NotConnected);
}

/// Answers every write with a fixed errno, as only the real kernel can.
struct Errno(PathBuf, i32);

impl FabricsDevice for Errno {
    fn path(&self) -> &Path {
        &self.0
    }
    fn submit(&self, _options: &str) -> nvme::Result<String> {
        Err(NvmeError::KernelRefused {
            op: "connect",
            path: self.0.clone(),
            errno: self.1,
            source: std::io::Error::from_raw_os_error(self.1),
        })
    }
}

#[tokio::test]
async fn already_connected_is_success_when_sysfs_confirms() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(5, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[5], 0);
    let cfg = config(&s);
    let dev = Arc::new(Errno(cfg.fabrics_path.clone(), 114));
    let ini = Initiator::with_fabrics(cfg, host(), dev);
    assert_eq!(
        ini.connect(&params(VOL1)).await.unwrap(),
        ConnectOutcome::AlreadyConnected {
            controllers: vec!["nvme5".into()]
        }
    );
}

#[tokio::test]
async fn already_connected_without_matching_controller_stays_an_error() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    // Same NQN but another address, and a controller being deleted at the right address.
    s.add_controller(0, 0, VOL1, "live", "10.0.0.9", 4420);
    s.add_controller(1, 0, VOL1, "deleting", "10.0.0.1", 4420);
    let cfg = config(&s);
    let dev = Arc::new(Errno(cfg.fabrics_path.clone(), 114));
    let err = Initiator::with_fabrics(cfg, host(), dev)
        .connect(&params(VOL1))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::KernelRefused);
    assert!(matches!(err, NvmeError::KernelRefused { errno: 114, .. }));
}

#[tokio::test]
async fn einval_is_kernel_refused_with_errno() {
    let s = FakeSys::new();
    let cfg = config(&s);
    let dev = Arc::new(Errno(cfg.fabrics_path.clone(), 22));
    let err = Initiator::with_fabrics(cfg, host(), dev)
        .connect(&params(VOL1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NvmeError::KernelRefused { errno: 22, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::KernelRefused);
}

/// Opens the FIFO read-write and non-blocking, and fills it so the next writer blocks.
fn fill_fifo(path: &Path) -> std::fs::File {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    let chunk = [0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    f
}

fn drain(f: &mut std::fs::File) {
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn blocked_fabrics_write_times_out_naming_the_path() {
    let s = FakeSys::new();
    let mut cfg = config(&s);
    cfg.connect_timeout = Duration::from_millis(200);
    mkfifo(&cfg.fabrics_path);
    let mut pipe = fill_fifo(&cfg.fabrics_path);
    let ini = Initiator::with_fabrics(
        cfg.clone(),
        host(),
        Arc::new(FabricsFile::new(cfg.fabrics_path.clone())),
    );

    let err = ini.connect(&params(VOL1)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
    let text = err.to_string();
    assert!(
        text.contains(&cfg.fabrics_path.display().to_string()),
        "{text}"
    );
    assert!(text.contains("timed out"), "{text}");

    // Release the stuck blocking thread so the runtime can shut down. Emptying the pipe lets its
    // write through, but the drain may also swallow those options, and its one read would then
    // wait forever on a FIFO it holds open itself (the runtime's drop waits for it: a hung test,
    // about once in 300 runs). Bytes written after the drain are there for that read whichever
    // way the race went.
    drain(&mut pipe);
    pipe.write_all(b"released\n").unwrap();
}

#[tokio::test]
async fn blocked_delete_controller_times_out_naming_the_path() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    let fifo = s.ctrl_dir(0).join("delete_controller");
    std::fs::remove_file(&fifo).unwrap();
    mkfifo(&fifo); // no reader: opening it for write blocks
    let mut cfg = config(&s);
    cfg.disconnect_timeout = Duration::from_millis(200);
    let ini = Initiator::new(cfg, host());

    let err = ini.disconnect(&nqn(VOL1)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert!(
        err.to_string()
            .contains("class/nvme/nvme0/delete_controller"),
        "{err}"
    );

    // Become the reader: the stuck writer proceeds and writes "1".
    let mut reader = std::fs::File::open(&fifo).unwrap();
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(got, "1");
}

#[tokio::test]
async fn disconnect_of_vanished_controller_is_not_an_error() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    // The kernel removed delete_controller between scan and write.
    std::fs::remove_file(s.ctrl_dir(0).join("delete_controller")).unwrap();
    let ini = Initiator::new(config(&s), host());
    assert!(ini.disconnect(&nqn(VOL1)).await.unwrap().deleted.is_empty());
}

#[tokio::test]
async fn wait_for_device_returns_once_live_and_times_out_otherwise() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "connecting", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    let ini = Initiator::new(config(&s), host());
    let err = ini
        .wait_for_device(
            &nqn(VOL1),
            Duration::from_millis(100),
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert!(err.to_string().contains(VOL1));

    s.set_state(0, "live");
    let d = ini
        .wait_for_device(
            &nqn(VOL1),
            Duration::from_secs(5),
            Duration::from_millis(10),
        )
        .await
        .unwrap();
    assert_eq!(d.name, "nvme0n1");
}

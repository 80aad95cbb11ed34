#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use mount::{CommandRunner, CommandSpec, Error, TokioRunner};

#[tokio::test]
async fn deadline_kills_a_sleeping_command_and_names_it() {
    let spec = CommandSpec::new("sleep", ["5"], Duration::from_millis(200));
    let err = TokioRunner.run(&spec).await.unwrap_err();
    match &err {
        Error::CommandTimeout { command, deadline } => {
            assert_eq!(command, "sleep 5");
            assert_eq!(*deadline, Duration::from_millis(200));
        }
        other => panic!("expected timeout, got {other}"),
    }
    assert!(err.to_string().contains("sleep 5"), "{err}");
}

#[tokio::test]
async fn captures_exit_code_stdout_and_stderr() {
    let spec = CommandSpec::new(
        "sh",
        ["-c", "echo out; echo err >&2; exit 3"],
        Duration::from_secs(10),
    );
    let out = TokioRunner.run(&spec).await.unwrap();
    assert_eq!(out.code, Some(3));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    let err = out.check(&spec).unwrap_err().to_string();
    assert!(
        err.contains("exit status 3") && err.contains("out\nerr"),
        "{err}"
    );
}

#[tokio::test]
async fn arguments_are_not_interpreted_by_a_shell() {
    let spec = CommandSpec::new("echo", ["$(id)", "a;b"], Duration::from_secs(10));
    let out = TokioRunner.run(&spec).await.unwrap();
    assert_eq!(out.stdout, "$(id) a;b\n");
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let spec = CommandSpec::new("/nonexistent/blkid", ["-p"], Duration::from_secs(1));
    let err = TokioRunner.run(&spec).await.unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/blkid"));
}

#[tokio::test]
async fn deadline_also_kills_helpers_in_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let spec = CommandSpec::new("sh", ["-c", script.as_str()], Duration::from_millis(300));
    assert!(matches!(
        TokioRunner.run(&spec).await,
        Err(Error::CommandTimeout { .. })
    ));
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    // SIGKILL delivery is asynchronous; poll (bounded) for the helper to die or become a zombie.
    let mut dead = false;
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => dead = true,
            Ok(stat) => {
                dead = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            }
        }
        if dead {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead, "helper sleep {pid} survived the deadline");
}

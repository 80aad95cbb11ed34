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

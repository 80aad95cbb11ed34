//! Each fault, observed through state and what a real SSH client sees (never through timing).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

/// Short client patience for commands that are expected never to answer.
const GIVE_UP: Duration = Duration::from_millis(500);

#[tokio::test]
async fn latency_delays_the_effect_until_after_the_client_gave_up() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    sim.faults().set_latency(Duration::from_secs(3600));
    let r = try_exec(&c, &add_cmd(VOL, "1G"), GIVE_UP).await;
    assert!(r.is_err(), "reply must wait for the latency");
    assert_eq!(sim.commands(), vec![add_cmd(VOL, "1G")], "received");
    assert!(
        sim.disks().is_empty(),
        "not applied before the latency elapsed"
    );
    sim.faults().clear();
    assert_eq!(exec(&c, "/system identity print").await.exit, Some(0));
}

#[tokio::test]
async fn fail_nth_fails_exactly_that_command_without_applying_it() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    sim.faults().fail_nth(2, "failure: execution error");
    assert_eq!(exec(&c, "/system identity print").await.exit, Some(0));
    let out = exec(&c, &add_cmd(VOL, "1G")).await;
    assert_eq!(
        (out.exit, out.stdout.as_str()),
        (Some(1), "failure: execution error\r\n")
    );
    assert!(sim.disks().is_empty());
    assert_eq!(exec(&c, &add_cmd(VOL, "1G")).await.exit, Some(0));
    assert_eq!(sim.disks().len(), 1);
}

#[tokio::test]
async fn disk_full_refuses_add_and_growth_but_not_shrink() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    exec(&c, &add_cmd(VOL, "2G")).await;
    sim.faults().disk_full(true);
    let add = exec(&c, &add_cmd("pvc-other", "1G")).await;
    assert_eq!(
        (add.exit, add.stdout.as_str()),
        (Some(1), "failure: not enough space\r\n")
    );
    let grow = exec(&c, &format!("/disk set [find slot={VOL}] file-size=3G")).await;
    assert_eq!(grow.stdout, "failure: not enough space\r\n");
    let shrink = exec(&c, &format!("/disk set [find slot={VOL}] file-size=1G")).await;
    assert_eq!(shrink.exit, Some(0));
    assert_eq!(sim.disks().len(), 1);
    assert_eq!(sim.disks()[0].size, 1 << 30);
}

#[tokio::test]
async fn drop_before_apply_closes_the_connection_and_changes_nothing() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    sim.faults().drop_next("/disk add");
    let r = try_exec(&c, &add_cmd(VOL, "1G"), STEP).await;
    match r {
        Ok(out) => assert_eq!(
            out.exit, None,
            "no exit status on a dropped connection: {out:?}"
        ),
        Err(e) => assert!(!e.contains("timeout"), "{e}"),
    }
    assert!(sim.disks().is_empty());
    assert!(
        try_exec(&c, "/system identity print", STEP).await.is_err(),
        "connection is gone"
    );
    let c2 = connect(&sim, &key).await;
    assert_eq!(
        exec(&c2, &add_cmd(VOL, "1G")).await.exit,
        Some(0),
        "one-shot fault"
    );
}

#[tokio::test]
async fn drop_after_apply_loses_the_reply_but_keeps_the_effect() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    sim.faults().drop_next("/disk add!");
    let r = try_exec(&c, &add_cmd(VOL, "1G"), STEP).await;
    assert!(r.map(|o| o.exit.is_none()).unwrap_or(true), "no reply");
    assert_eq!(sim.disks().len(), 1, "applied although unanswered");
    let c2 = connect(&sim, &key).await;
    let again = exec(&c2, &add_cmd(VOL, "1G")).await;
    assert_eq!(again.stdout, "failure: slot already exists\r\n");
}

#[tokio::test]
async fn hang_never_replies_and_only_matching_commands_hang() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    sim.faults().hang_next("/disk print");
    assert_eq!(
        exec(&c, &add_cmd(VOL, "1G")).await.exit,
        Some(0),
        "other verbs unaffected"
    );
    let r = try_exec(&c, "/disk print detail", GIVE_UP).await;
    assert_eq!(r.err().as_deref(), Some("client gave up (timeout)"));
    // The connection itself still works: only that command hung.
    assert_eq!(exec(&c, "/system identity print").await.exit, Some(0));

    sim.faults().hang_next("/disk remove!");
    assert!(
        try_exec(&c, &format!("/disk remove [find slot={VOL}]"), GIVE_UP)
            .await
            .is_err()
    );
    assert!(
        sim.disks().is_empty(),
        "hang after apply still applied the remove"
    );
}

#[tokio::test]
async fn restart_drops_live_connections_and_keeps_state() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    exec(&c, &add_cmd(VOL, "1G")).await;
    sim.faults().hang_next("/disk print");
    let hung = tokio::spawn({
        let c = connect(&sim, &key).await;
        async move { try_exec(&c, "/disk print detail", STEP).await }
    });
    while !sim.commands().iter().any(|l| l.starts_with("/disk print")) {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = sim.addr();
    sim.restart().await;
    assert_eq!(sim.connection_count(), 0);
    let hung = hung.await.unwrap();
    assert!(
        hung.map(|o| o.exit.is_none()).unwrap_or(true),
        "hung command ends without a reply"
    );
    assert!(
        try_exec(&c, "/system identity print", STEP).await.is_err(),
        "old connection cut"
    );

    assert_eq!(sim.addr(), addr);
    let c2 = connect(&sim, &key).await;
    let out = exec(&c2, &format!("/disk print detail where slot={VOL}")).await;
    assert!(out.stdout.contains(VOL), "disks survive a reboot");
}

#[tokio::test]
async fn errors_on_stderr_moves_failures_to_stderr() {
    let (sim, key) = sim().await;
    let c = connect(&sim, &key).await;
    sim.faults().errors_on_stderr(true);
    let out = exec(&c, "/disk set [find slot=x]").await;
    assert_eq!(
        (out.exit, out.stdout.as_str(), out.stderr.as_str()),
        (Some(1), "", "failure: file-size required\r\n")
    );
    let ok = exec(&c, "/system identity print").await;
    assert_eq!(
        (ok.stdout.as_str(), ok.stderr.as_str()),
        ("name: rds-sim\r\n", "")
    );
}

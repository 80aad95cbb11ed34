//! Controller and Identity conformance over the real stack: gRPC on a unix socket → controller →
//! SSH (host key pinned) → rds-sim. Cases follow csi-sanity's Identity/Controller checks for the
//! capabilities we declare, plus the RDS-specific failure modes.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;

use common::*;
use csi::v1 as pb;
use csi::v1::controller_service_capability::rpc::Type as Rpc;
use csi::v1::volume_capability::access_mode::Mode;
use tonic::Code;

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

// ---------------------------------------------------------------- Identity

#[tokio::test]
async fn plugin_info_names_the_driver_and_version() {
    let mut h = start().await;
    let info = h
        .identity
        .get_plugin_info(pb::GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "rds.csi.srvlab.io");
    assert!(!info.vendor_version.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn plugin_capabilities_declare_the_controller_service() {
    let mut h = start().await;
    let caps = h
        .identity
        .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let has_controller = caps.capabilities.iter().any(|c| {
        matches!(&c.r#type, Some(pb::plugin_capability::Type::Service(s))
            if s.r#type == pb::plugin_capability::service::Type::ControllerService as i32)
    });
    assert!(has_controller, "{caps:?}");
    let declares_topology = caps.capabilities.iter().any(|c| {
        matches!(&c.r#type, Some(pb::plugin_capability::Type::Service(s))
            if s.r#type == pb::plugin_capability::service::Type::VolumeAccessibilityConstraints as i32)
    });
    assert!(
        !declares_topology,
        "topology is declared but never returned"
    );
    let online_expansion = caps.capabilities.iter().any(|c| {
        matches!(&c.r#type, Some(pb::plugin_capability::Type::VolumeExpansion(e))
            if e.r#type == pb::plugin_capability::volume_expansion::Type::Online as i32)
    });
    assert!(
        online_expansion,
        "online expansion is proven in the VM suite and must be declared"
    );
    h.stop().await;
}

/// RDS reachability is reported, never a reason to be unready: sidecars wait for ready, and
/// ControllerUnpublish needs no RDS, so an outage must not block detaches.
#[tokio::test]
async fn probe_stays_ready_and_unpublish_works_while_the_rds_is_down() {
    let mut h = start().await;
    let p = h
        .identity
        .probe(pb::ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.ready, Some(true));
    let sims = std::mem::take(&mut h.sims);
    for s in sims {
        s.sim.shutdown().await;
    }
    let p = h
        .identity
        .probe(pb::ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.ready, Some(true));
    h.controller
        .controller_unpublish_volume(pb::ControllerUnpublishVolumeRequest {
            volume_id: "default:pvc-0b6f5a52-93d4-4b7e-8d1e-7c2f9a1e3b40".into(),
            node_id: "worker-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    h.stop().await;
}

// ---------------------------------------------------------------- capabilities

#[tokio::test]
async fn controller_declares_only_what_it_implements() {
    let mut h = start().await;
    let caps = h
        .controller
        .controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let declared: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| {
            c.r#type
                .as_ref()
                .map(|pb::controller_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    for want in [
        Rpc::CreateDeleteVolume,
        Rpc::ListVolumes,
        Rpc::GetCapacity,
        Rpc::ExpandVolume,
        Rpc::GetVolume,
        Rpc::VolumeCondition,
        Rpc::PublishUnpublishVolume,
        Rpc::CreateDeleteSnapshot,
        Rpc::CloneVolume,
        Rpc::ListSnapshots,
    ] {
        assert!(declared.contains(&(want as i32)), "{want:?} missing");
    }
    for absent in [Rpc::ModifyVolume, Rpc::GetSnapshot] {
        assert!(
            !declared.contains(&(absent as i32)),
            "{absent:?} declared but not implemented"
        );
    }
    // And what is not declared answers UNIMPLEMENTED rather than pretending.
    let r = h
        .controller
        .controller_modify_volume(pb::ControllerModifyVolumeRequest::default())
        .await;
    assert_eq!(code(r), Code::Unimplemented);
    // PUBLISH_UNPUBLISH_VOLUME is declared, so Publish answers (here: the empty request is
    // refused for what it lacks, not as unimplemented).
    let r = h
        .controller
        .controller_publish_volume(pb::ControllerPublishVolumeRequest::default())
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
    h.stop().await;
}

// ---------------------------------------------------------------- CreateVolume

#[tokio::test]
async fn create_volume_rejects_bad_requests_with_invalid_argument() {
    let mut h = start().await;
    let mut no_name = create_req("", 1);
    no_name.name.clear();
    assert_eq!(
        code(h.controller.create_volume(no_name).await),
        Code::InvalidArgument
    );

    let mut no_caps = create_req(&pvc_name(), 1);
    no_caps.volume_capabilities.clear();
    assert_eq!(
        code(h.controller.create_volume(no_caps).await),
        Code::InvalidArgument
    );

    let mut ro_many = create_req(&pvc_name(), 1);
    ro_many.volume_capabilities = vec![mount_cap(Mode::MultiNodeReaderOnly)];
    assert_eq!(
        code(h.controller.create_volume(ro_many).await),
        Code::InvalidArgument
    );

    let mut rwx_fs = create_req(&pvc_name(), 1);
    rwx_fs.volume_capabilities = vec![mount_cap(Mode::MultiNodeMultiWriter)];
    let err = h.controller.create_volume(rwx_fs).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("Block"), "{}", err.message());

    let mut with_source = create_req(&pvc_name(), 1);
    with_source.volume_content_source = Some(pb::VolumeContentSource {
        r#type: Some(pb::volume_content_source::Type::Volume(
            pb::volume_content_source::VolumeSource {
                volume_id: "default:pvc-x".into(),
            },
        )),
    });
    // Clones are served (snapshots_grpc.rs); a source that does not exist is NOT_FOUND.
    assert_eq!(
        code(h.controller.create_volume(with_source).await),
        Code::NotFound
    );

    for (k, v) in [
        ("nvmePort", "4420abc"),
        ("nvmePort", "0"),
        ("ctrlLossTmo", "-2"),
        ("reconnectDelay", "0"),
        ("keepAliveTmo", "-1"),
        ("nvmeAddress", "rds.example.com"),
        ("volumePath", "/storage-pool/metal-csi-evil"),
        ("volumePath", "/storage-pool/metal-csi/../x"),
        ("volumePath", "/storage-pool/metal-csi;/disk remove"),
        ("backend", "nope"),
        ("nvmeport", "4420"),
    ] {
        let mut r = create_req(&pvc_name(), 1);
        r.parameters.insert(k.into(), v.into());
        let err = h.controller.create_volume(r).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{k}={v}: {}",
            err.message()
        );
    }
    assert!(
        h.sim().disks().iter().all(|d| !d.slot.starts_with("pvc-")),
        "a refused request left a disk"
    );
    h.stop().await;
}

#[tokio::test]
async fn create_volume_rejects_sizes_out_of_range() {
    let mut h = start().await;
    let mut too_big = create_req(&pvc_name(), 1);
    too_big.capacity_range = Some(pb::CapacityRange {
        required_bytes: (16 << 40) + 1,
        limit_bytes: 0,
    });
    assert_eq!(
        code(h.controller.create_volume(too_big).await),
        Code::OutOfRange
    );
    let mut inverted = create_req(&pvc_name(), 1);
    inverted.capacity_range = Some(pb::CapacityRange {
        required_bytes: 3 * GIB,
        limit_bytes: 2 * GIB,
    });
    assert_eq!(
        code(h.controller.create_volume(inverted).await),
        Code::OutOfRange
    );
    h.stop().await;
}

#[tokio::test]
async fn create_volume_makes_an_exported_disk_in_two_round_trips() {
    let mut h = start().await;
    let name = pvc_name();
    let mut req = create_req(&name, 5);
    req.parameters
        .insert("csi.storage.k8s.io/pvc/name".into(), "data".into());
    req.parameters
        .insert("csi.storage.k8s.io/pvc/namespace".into(), "apps".into());
    req.parameters.insert("nvmePort".into(), "4421".into());
    h.sim().clear_commands();
    let v = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        h.sim().commands().len(),
        2,
        "round trips: {:?}",
        h.sim().commands()
    );
    assert_eq!(v.volume_id, format!("default:{name}"));
    assert_eq!(v.capacity_bytes, 5 * GIB);
    let ctx = &v.volume_context;
    assert_eq!(ctx["nqn"], format!("nqn.2000-02.com.mikrotik:{name}"));
    assert_eq!(ctx["nvmePort"], "4421");
    assert_eq!(ctx["nvmeAddress"], "127.0.0.1");
    // `<slot>.p-<fingerprint of the parameters>.img` (vocab::ownership).
    let file = &ctx["volumePath"];
    assert!(
        file.starts_with(&format!("/storage-pool/metal-csi/{name}.p-")) && file.ends_with(".img"),
        "{file}"
    );
    assert_eq!(ctx["ctrlLossTmo"], "-1");
    assert_eq!(ctx["csi.storage.k8s.io/pvc/name"], "data");
    assert_eq!(ctx["csi.storage.k8s.io/pvc/namespace"], "apps");

    let disk = h
        .sim()
        .disks()
        .into_iter()
        .find(|d| d.slot == name)
        .expect("disk on the RDS");
    assert_eq!(disk.size, 5 << 30);
    assert_eq!(disk.nvme_port, Some(4421));
    assert_eq!(disk.nvme_nqn.as_deref(), Some(ctx["nqn"].as_str()));
    h.stop().await;
}

#[tokio::test]
async fn create_volume_never_rounds_down() {
    let mut h = start().await;
    let mut req = create_req(&pvc_name(), 1);
    req.capacity_range = Some(pb::CapacityRange {
        required_bytes: 3 * GIB / 2 + 1,
        limit_bytes: 0,
    });
    let v = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(v.capacity_bytes > 3 * GIB / 2, "{}", v.capacity_bytes);
    let disk = &h
        .sim()
        .disks()
        .into_iter()
        .find(|d| v.volume_id.ends_with(&d.slot))
        .unwrap();
    assert_eq!(
        disk.size as i64, v.capacity_bytes,
        "reported capacity is what the RDS allocated"
    );
    h.stop().await;
}

#[tokio::test]
async fn create_volume_is_idempotent_and_refuses_a_different_size() {
    let mut h = start().await;
    let name = pvc_name();
    let a = created(&mut h.controller, create_req(&name, 2)).await;
    let b = created(&mut h.controller, create_req(&name, 2)).await;
    assert_eq!(a.volume_id, b.volume_id);
    assert_eq!(a.capacity_bytes, b.capacity_bytes);
    assert_eq!(a.volume_context, b.volume_context);
    let err = h
        .controller
        .create_volume(create_req(&name, 3))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
    assert_eq!(h.sim().disks().iter().filter(|d| d.slot == name).count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn names_that_are_not_slots_map_to_stable_safe_slots() {
    let mut h = start().await;
    let name = "Sanity Volume/with:odd;chars";
    let a = created(&mut h.controller, create_req(name, 1)).await;
    let b = created(&mut h.controller, create_req(name, 1)).await;
    assert_eq!(a.volume_id, b.volume_id);
    assert!(a.volume_id.starts_with("default:pvc-"), "{}", a.volume_id);
    h.stop().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_disk() {
    let h = start().await;
    let name = pvc_name();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = h.controller.clone();
        let n = name.clone();
        tasks.push(tokio::spawn(async move {
            c.create_volume(create_req(&n, 1)).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(
            t.await
                .unwrap()
                .unwrap()
                .into_inner()
                .volume
                .unwrap()
                .volume_id,
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(h.sim().disks().iter().filter(|d| d.slot == name).count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn full_pool_is_resource_exhausted_and_leaves_nothing_behind() {
    let mut h = start().await;
    h.sim().faults().disk_full(true);
    let name = pvc_name();
    let err = h
        .controller
        .create_volume(create_req(&name, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(h.sim().disks().iter().all(|d| d.slot != name));
    h.sim().faults().disk_full(false);
    // A request bigger than the pool is refused by the RDS's own capacity check too.
    let mut huge = create_req(&pvc_name(), 1);
    huge.capacity_range = Some(pb::CapacityRange {
        required_bytes: 15 << 40,
        limit_bytes: 0,
    });
    assert_eq!(
        code(h.controller.create_volume(huge).await),
        Code::ResourceExhausted
    );
    h.stop().await;
}

#[tokio::test]
async fn rds_outage_is_unavailable_for_create_and_delete() {
    let mut h = start().await;
    let name = pvc_name();
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    let sims = std::mem::take(&mut h.sims);
    for s in sims {
        s.sim.shutdown().await;
    }
    let err = h
        .controller
        .create_volume(create_req(&pvc_name(), 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    let del = pb::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    };
    let err = h.controller.delete_volume(del).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unavailable,
        "delete during an outage must not report success: {}",
        err.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_hung_rds_command_is_retried_and_a_stuck_rds_fails_within_the_deadline() {
    let mut h = start_with(|o| o.read_timeout = SHORT).await;
    let missing = pb::ControllerGetVolumeRequest {
        volume_id: format!("default:{}", pvc_name()),
    };
    // One hung print: the deadline abandons it and the idempotent read is retried.
    h.sim().faults().hang_next("/disk print");
    let err = h
        .controller
        .controller_get_volume(missing.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    // An RDS that answers nothing in time: UNAVAILABLE, never NOT_FOUND.
    h.sim().faults().set_latency(SHORT * 4);
    let err = h
        .controller
        .controller_get_volume(missing)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("timed out"), "{}", err.message());
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_host_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = SandboxOptions::default();
    let real = sandbox::start_sim(dir.path(), "default", &o).await.unwrap();
    let other = sandbox::start_sim(dir.path(), "other", &o).await.unwrap();
    let mut settings = real.settings.clone();
    settings.host_key = Some(other.sim.host_key_fingerprint());
    let mut h = Sandbox::serve(dir, vec![real, other], &[settings], None)
        .await
        .unwrap();
    let p = h
        .identity
        .probe(pb::ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    // Ready all the same: the refusal shows where the RDS is needed, below.
    assert_eq!(p.ready, Some(true));
    let err = h
        .controller
        .create_volume(create_req(&pvc_name(), 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("mismatch"), "{}", err.message());
    assert!(
        h.sims[0]
            .sim
            .disks()
            .iter()
            .all(|d| !d.slot.starts_with("pvc-"))
    );
    h.stop().await;
}

// ---------------------------------------------------------------- DeleteVolume

#[tokio::test]
async fn delete_volume_removes_disk_and_backing_file_and_is_idempotent() {
    let mut h = start().await;
    let name = pvc_name();
    let v = created(&mut h.controller, create_req(&name, 1)).await;
    let path = v.volume_context["volumePath"].clone();
    assert!(h.sim().files().iter().any(|f| f.path == path));
    let del = pb::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    };
    h.controller.delete_volume(del.clone()).await.unwrap();
    assert!(h.sim().disks().iter().all(|d| d.slot != name));
    assert!(
        h.sim().files().iter().all(|f| f.path != path),
        "backing file left behind"
    );
    h.controller.delete_volume(del).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn delete_volume_argument_and_foreign_ids() {
    let mut h = start().await;
    let empty = pb::DeleteVolumeRequest::default();
    assert_eq!(
        code(h.controller.delete_volume(empty).await),
        Code::InvalidArgument
    );
    let before = h.sim().disks();
    for id in [
        "storage-pool",
        "default:storage-pool",
        "reallyfakevolumeid",
        "default:pvc-00000000-0000-0000-0000-000000000000",
    ] {
        let r = pb::DeleteVolumeRequest {
            volume_id: id.into(),
            ..Default::default()
        };
        assert_eq!(code(h.controller.delete_volume(r).await), Code::Ok, "{id}");
    }
    assert_eq!(
        h.sim().disks(),
        before,
        "deleting foreign ids touched the RDS"
    );
    let r = pb::DeleteVolumeRequest {
        volume_id: "elsewhere:pvc-1".into(),
        ..Default::default()
    };
    assert_eq!(
        code(h.controller.delete_volume(r).await),
        Code::FailedPrecondition
    );
    h.stop().await;
}

// ---------------------------------------------------------------- Validate / Get

#[tokio::test]
async fn validate_volume_capabilities_cases() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    let ok = pb::ValidateVolumeCapabilitiesRequest {
        volume_id: v.volume_id.clone(),
        volume_capabilities: vec![rwo()],
        ..Default::default()
    };
    let r = h
        .controller
        .validate_volume_capabilities(ok.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.confirmed.unwrap().volume_capabilities, vec![rwo()]);

    let mut bad = ok.clone();
    bad.volume_capabilities = vec![mount_cap(Mode::MultiNodeReaderOnly)];
    let r = h
        .controller
        .validate_volume_capabilities(bad)
        .await
        .unwrap()
        .into_inner();
    assert!(r.confirmed.is_none());
    assert!(!r.message.is_empty());

    let mut no_id = ok.clone();
    no_id.volume_id.clear();
    assert_eq!(
        code(h.controller.validate_volume_capabilities(no_id).await),
        Code::InvalidArgument
    );
    let mut no_caps = ok.clone();
    no_caps.volume_capabilities.clear();
    assert_eq!(
        code(h.controller.validate_volume_capabilities(no_caps).await),
        Code::InvalidArgument
    );
    let mut missing = ok;
    missing.volume_id = format!("default:{}", pvc_name());
    assert_eq!(
        code(h.controller.validate_volume_capabilities(missing).await),
        Code::NotFound
    );
    h.stop().await;
}

#[tokio::test]
async fn controller_get_volume_cases() {
    let mut h = start().await;
    let v = created(&mut h.controller, create_req(&pvc_name(), 2)).await;
    let got = h
        .controller
        .controller_get_volume(pb::ControllerGetVolumeRequest {
            volume_id: v.volume_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let gv = got.volume.unwrap();
    assert_eq!(gv.volume_id, v.volume_id);
    assert_eq!(gv.capacity_bytes, v.capacity_bytes);
    assert_eq!(gv.volume_context["nqn"], v.volume_context["nqn"]);
    let missing = pb::ControllerGetVolumeRequest {
        volume_id: format!("default:{}", pvc_name()),
    };
    assert_eq!(
        code(h.controller.controller_get_volume(missing).await),
        Code::NotFound
    );
    let empty = pb::ControllerGetVolumeRequest::default();
    assert_eq!(
        code(h.controller.controller_get_volume(empty).await),
        Code::InvalidArgument
    );
    h.stop().await;
}

// ---------------------------------------------------------------- ListVolumes

#[tokio::test]
async fn list_volumes_pages_with_tokens() {
    let mut h = start().await;
    let mut made = Vec::new();
    for _ in 0..5 {
        let v = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
        made.push(v.volume_id);
    }
    made.sort();
    let all = h
        .controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = all
        .entries
        .iter()
        .map(|e| e.volume.clone().unwrap().volume_id)
        .collect();
    ids.sort();
    assert_eq!(
        ids, made,
        "the pool disk and other non-driver disks must not be listed"
    );
    assert!(all.next_token.is_empty());

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = h
            .controller
            .list_volumes(pb::ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.entries.len() <= 2);
        seen.extend(
            r.entries
                .iter()
                .map(|e| e.volume.clone().unwrap().volume_id),
        );
        pages += 1;
        if pages == 1 {
            // Delete the last volume of the first page: its token must still work.
            let last = seen.last().unwrap().clone();
            let del = pb::DeleteVolumeRequest {
                volume_id: last,
                ..Default::default()
            };
            h.controller.delete_volume(del).await.unwrap();
        }
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made, "every volume seen exactly once, in order");

    let bad = pb::ListVolumesRequest {
        max_entries: 0,
        starting_token: "garbage".into(),
    };
    assert_eq!(code(h.controller.list_volumes(bad).await), Code::Aborted);
    let neg = pb::ListVolumesRequest {
        max_entries: -1,
        starting_token: String::new(),
    };
    assert_eq!(
        code(h.controller.list_volumes(neg).await),
        Code::InvalidArgument
    );
    h.stop().await;
}

// ---------------------------------------------------------------- GetCapacity

#[tokio::test]
async fn get_capacity_reports_the_pools_free_space() {
    let mut h = start_with(|o| o.capacity = 100 * GIB as u64).await;
    let before = h
        .controller
        .get_capacity(pb::GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.available_capacity, 100 * GIB);
    assert_eq!(before.minimum_volume_size, Some(GIB));
    h.controller
        .create_volume(create_req(&pvc_name(), 10))
        .await
        .unwrap();
    let after = h
        .controller
        .get_capacity(pb::GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.available_capacity, 90 * GIB);
    let bad = pb::GetCapacityRequest {
        parameters: HashMap::from([("backend".to_string(), "nope".to_string())]),
        ..Default::default()
    };
    assert_eq!(
        code(h.controller.get_capacity(bad).await),
        Code::InvalidArgument
    );
    let unsupported = pb::GetCapacityRequest {
        volume_capabilities: vec![mount_cap(Mode::MultiNodeReaderOnly)],
        ..Default::default()
    };
    let r = h
        .controller
        .get_capacity(unsupported)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 0);
    h.stop().await;
}

// ---------------------------------------------------------------- ControllerExpandVolume

#[tokio::test]
async fn expand_volume_grows_and_never_shrinks() {
    let mut h = start().await;
    let name = pvc_name();
    let v = created(&mut h.controller, create_req(&name, 2)).await;
    let grow = |gib: i64, cap: pb::VolumeCapability| pb::ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(cap),
        ..Default::default()
    };
    let r = h
        .controller
        .controller_expand_volume(grow(4, rwo()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 4 * GIB);
    assert!(
        r.node_expansion_required,
        "a filesystem must be grown on the node"
    );
    assert_eq!(
        h.sim()
            .disks()
            .into_iter()
            .find(|d| d.slot == name)
            .unwrap()
            .size,
        4 << 30
    );
    // Asking for less than the volume has keeps it as it is.
    let r = h
        .controller
        .controller_expand_volume(grow(3, rwo()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 4 * GIB);
    assert_eq!(
        h.sim()
            .disks()
            .into_iter()
            .find(|d| d.slot == name)
            .unwrap()
            .size,
        4 << 30
    );
    let r = h
        .controller
        .controller_expand_volume(grow(5, block_cap(Mode::SingleNodeWriter)))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !r.node_expansion_required,
        "a block volume has no filesystem to grow"
    );

    let mut no_range = grow(6, rwo());
    no_range.capacity_range = None;
    assert_eq!(
        code(h.controller.controller_expand_volume(no_range).await),
        Code::InvalidArgument
    );
    let mut no_id = grow(6, rwo());
    no_id.volume_id.clear();
    assert_eq!(
        code(h.controller.controller_expand_volume(no_id).await),
        Code::InvalidArgument
    );
    let mut missing = grow(6, rwo());
    missing.volume_id = format!("default:{}", pvc_name());
    assert_eq!(
        code(h.controller.controller_expand_volume(missing).await),
        Code::NotFound
    );
    let mut too_big = grow(6, rwo());
    too_big.capacity_range = Some(pb::CapacityRange {
        required_bytes: (16 << 40) + 1,
        limit_bytes: 0,
    });
    assert_eq!(
        code(h.controller.controller_expand_volume(too_big).await),
        Code::OutOfRange
    );
    h.sim().faults().disk_full(true);
    assert_eq!(
        code(h.controller.controller_expand_volume(grow(8, rwo())).await),
        Code::ResourceExhausted
    );
    h.stop().await;
}

// ---------------------------------------------------------------- several appliances

#[tokio::test]
async fn a_storage_class_picks_the_backend_and_the_id_remembers_it() {
    let mut h = start_with(|o| o.backends = vec!["default".into(), "rds2".into()]).await;
    let name = pvc_name();
    let mut req = create_req(&name, 1);
    req.parameters.insert("backend".into(), "rds2".into());
    let v = h
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, format!("rds2:{name}"));
    assert!(h.sims[1].sim.disks().iter().any(|d| d.slot == name));
    assert!(h.sims[0].sim.disks().iter().all(|d| d.slot != name));
    let list = h
        .controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.entries.len(), 1);
    let del = pb::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    };
    h.controller.delete_volume(del).await.unwrap();
    assert!(h.sims[1].sim.disks().iter().all(|d| d.slot != name));
    h.stop().await;
}

// ---------------------------------------------------------------- VOLUME_CONDITION

/// VOLUME_CONDITION is declared, so ControllerGetVolume and every ListVolumes entry carry a
/// condition: normal for an exported volume, abnormal (with the reason) for a disk of the
/// driver's whose NVMe/TCP export was switched off on the RDS.
#[tokio::test]
async fn volume_conditions_come_from_the_disk_record() {
    let mut h = start().await;
    let caps = h
        .controller
        .controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let declared = |t: Rpc| {
        caps.capabilities.iter().any(|c| {
            matches!(&c.r#type, Some(pb::controller_service_capability::Type::Rpc(r)) if r.r#type == t as i32)
        })
    };
    assert!(declared(Rpc::VolumeCondition) && declared(Rpc::GetVolume));

    let good = created(&mut h.controller, create_req(&pvc_name(), 1)).await;
    // A volume of the driver's (a static one, as an operator might add) that is not exported.
    let slot = pvc_name();
    h.sim()
        .run_local(&format!(
            "/disk add type=file file-path=/storage-pool/metal-csi/{slot}.img file-size=1G slot={slot} nvme-tcp-export=no"
        ))
        .unwrap();
    let off = format!("default:{slot}");

    let get = async |c: &mut pb::controller_client::ControllerClient<tonic::transport::Channel>,
                     id: &str| {
        c.controller_get_volume(pb::ControllerGetVolumeRequest {
            volume_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .volume_condition
        .unwrap()
    };
    let cond = get(&mut h.controller, &good.volume_id).await;
    assert!(!cond.abnormal, "{}", cond.message);
    assert!(!cond.message.is_empty());
    let cond = get(&mut h.controller, &off).await;
    assert!(cond.abnormal);
    assert!(cond.message.contains("export is off"), "{}", cond.message);

    let listed = h
        .controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let condition_of = |id: &str| {
        listed
            .iter()
            .find(|e| e.volume.as_ref().unwrap().volume_id == id)
            .and_then(|e| e.status.clone())
            .and_then(|s| s.volume_condition)
            .unwrap()
    };
    assert!(!condition_of(&good.volume_id).abnormal);
    assert!(condition_of(&off).abnormal);
    assert!(
        listed.iter().all(|e| e
            .status
            .as_ref()
            .is_some_and(|s| s.volume_condition.is_some())),
        "every entry carries a condition"
    );
    h.stop().await;
}

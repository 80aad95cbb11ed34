//! `rds-csi demo`: the whole control path on one machine, with nothing faked in between.
//!
//! The simulator is a real SSH server, the controller talks to it with the production SSH client
//! (host key pinned by fingerprint), and every step below is a real gRPC call over a unix socket.
//! Each step prints the RouterOS commands it caused, so a newcomer sees what the driver does
//! to an RDS and what each CSI call costs in round trips. Any unexpected answer fails the demo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use csi::v1 as pb;
use csi::v1::controller_client::ControllerClient;
use csi::v1::identity_client::IdentityClient;
use rds::{CommandEvent, CommandObserver};
use sandbox::{Sandbox, SandboxOptions};
use tonic::Code;
use tonic::transport::Channel;

use crate::args::DemoArgs;
use crate::error::CliError;
use crate::run::VERSION;

const GIB: i64 = 1 << 30;

/// Collects the RouterOS commands of the current step.
#[derive(Default)]
struct Transcript {
    events: Mutex<Vec<CommandEvent>>,
}

impl CommandObserver for Transcript {
    fn on_command(&self, event: &CommandEvent) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
    }
}

impl Transcript {
    fn take(&self) -> Vec<CommandEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

struct Demo {
    identity: IdentityClient<Channel>,
    controller: ControllerClient<Channel>,
    transcript: Arc<Transcript>,
    step: usize,
    failures: Vec<String>,
}

impl Demo {
    /// Runs one RPC, prints its outcome and the RouterOS commands behind it.
    async fn step<T, F>(&mut self, title: &str, expect: Code, call: F) -> Option<T>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
        T: std::fmt::Debug,
    {
        self.step += 1;
        println!("\n[{}] {title}", self.step);
        self.transcript.take();
        let start = Instant::now();
        let result = call.await;
        let elapsed = start.elapsed();
        let commands = self.transcript.take();
        let (code, reply) = match result {
            Ok(r) => (Code::Ok, Some(r.into_inner())),
            Err(s) => {
                println!("    -> {:?}: {}", s.code(), s.message());
                (s.code(), None)
            }
        };
        for c in &commands {
            println!(
                "    routeros ({:>7.2} ms, {}): {}",
                c.duration.as_secs_f64() * 1e3,
                c.outcome,
                c.line
            );
        }
        println!(
            "    {} in {:.2} ms, {} RouterOS round trip{}",
            if code == expect { "ok" } else { "UNEXPECTED" },
            elapsed.as_secs_f64() * 1e3,
            commands.len(),
            if commands.len() == 1 { "" } else { "s" }
        );
        if code != expect {
            self.failures.push(format!(
                "step {} ({title}): expected {expect:?}, got {code:?}",
                self.step
            ));
        }
        reply
    }
}

fn mount_cap() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            },
        )),
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: pb::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}

fn gib(n: i64) -> Option<pb::CapacityRange> {
    Some(pb::CapacityRange {
        required_bytes: n * GIB,
        limit_bytes: 0,
    })
}

pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    println!("rds-csi {VERSION} demo: simulator + controller over real SSH and gRPC");
    let transcript = Arc::new(Transcript::default());
    let observer: Arc<dyn CommandObserver> = transcript.clone();
    let options = SandboxOptions {
        observer: Some(observer),
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options).await?;
    sandbox.sim().faults().set_latency(args.latency);
    println!(
        "simulated RDS on {} (host key pinned: {}), injected latency {:?}",
        sandbox.sim().addr(),
        sandbox.sim().host_key_fingerprint(),
        args.latency
    );
    println!(
        "controller serving CSI on unix://{}",
        sandbox.socket.display()
    );

    let mut demo = Demo {
        identity: sandbox.identity.clone(),
        controller: sandbox.controller.clone(),
        transcript,
        step: 0,
        failures: Vec::new(),
    };
    let result = script(&mut demo).await;
    sandbox.stop().await;
    result?;
    if demo.failures.is_empty() {
        println!("\ndemo finished: every step answered as expected");
        Ok(())
    } else {
        Err(CliError::DemoAnswers(demo.failures))
    }
}

async fn script(d: &mut Demo) -> Result<(), CliError> {
    let mut id = d.identity.clone();
    let mut ctl = d.controller.clone();

    if let Some(info) = d
        .step(
            "GetPluginInfo",
            Code::Ok,
            id.get_plugin_info(pb::GetPluginInfoRequest {}),
        )
        .await
    {
        println!("    driver {} version {}", info.name, info.vendor_version);
    }
    if let Some(p) = d
        .step(
            "Probe (is the RDS answering?)",
            Code::Ok,
            id.probe(pb::ProbeRequest {}),
        )
        .await
    {
        println!("    ready: {:?}", p.ready);
        if p.ready != Some(true) {
            d.failures.push("Probe did not report ready".into());
        }
    }
    d.step(
        "ControllerGetCapabilities",
        Code::Ok,
        ctl.controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {}),
    )
    .await;
    let free_before = d
        .step(
            "GetCapacity",
            Code::Ok,
            ctl.get_capacity(pb::GetCapacityRequest::default()),
        )
        .await
        .map(|c| c.available_capacity);
    if let Some(free) = free_before {
        println!("    available: {free} bytes");
    }

    let name = format!("pvc-{}", uuid_like());
    let mut params = HashMap::new();
    params.insert(
        "csi.storage.k8s.io/pvc/name".to_string(),
        "demo-data".to_string(),
    );
    params.insert(
        "csi.storage.k8s.io/pvc/namespace".to_string(),
        "default".to_string(),
    );
    let create = |size: i64| pb::CreateVolumeRequest {
        name: name.clone(),
        capacity_range: gib(size),
        volume_capabilities: vec![mount_cap()],
        parameters: params.clone(),
        ..Default::default()
    };
    let created = d
        .step(
            &format!("CreateVolume {name} (5 GiB)"),
            Code::Ok,
            ctl.create_volume(create(5)),
        )
        .await
        .and_then(|r| r.volume);
    let Some(volume) = created else {
        return Err(CliError::DemoStopped {
            step: "CreateVolume",
        });
    };
    println!(
        "    volume_id {} capacity {} bytes",
        volume.volume_id, volume.capacity_bytes
    );
    let mut ctx: Vec<_> = volume.volume_context.iter().collect();
    ctx.sort();
    for (k, v) in ctx {
        println!("    context {k} = {v}");
    }
    d.step(
        "CreateVolume again, same name and size (idempotent retry)",
        Code::Ok,
        ctl.create_volume(create(5)),
    )
    .await;
    d.step(
        "CreateVolume again with a different size (must be refused)",
        Code::AlreadyExists,
        ctl.create_volume(create(7)),
    )
    .await;
    if let Some(list) = d
        .step(
            "ListVolumes",
            Code::Ok,
            ctl.list_volumes(pb::ListVolumesRequest::default()),
        )
        .await
    {
        for e in &list.entries {
            if let Some(v) = &e.volume {
                println!("    {} ({} bytes)", v.volume_id, v.capacity_bytes);
            }
        }
    }
    let expand = pb::ControllerExpandVolumeRequest {
        volume_id: volume.volume_id.clone(),
        capacity_range: gib(8),
        volume_capability: Some(mount_cap()),
        ..Default::default()
    };
    if let Some(r) = d
        .step(
            "ControllerExpandVolume to 8 GiB",
            Code::Ok,
            ctl.controller_expand_volume(expand),
        )
        .await
    {
        println!(
            "    capacity {} bytes, node expansion required: {}",
            r.capacity_bytes, r.node_expansion_required
        );
    }
    let get = pb::ControllerGetVolumeRequest {
        volume_id: volume.volume_id.clone(),
    };
    if let Some(r) = d
        .step(
            "ControllerGetVolume",
            Code::Ok,
            ctl.controller_get_volume(get),
        )
        .await
    {
        println!(
            "    capacity now {} bytes",
            r.volume.map(|v| v.capacity_bytes).unwrap_or(0)
        );
    }
    if let Some(c) = d
        .step(
            "GetCapacity",
            Code::Ok,
            ctl.get_capacity(pb::GetCapacityRequest::default()),
        )
        .await
        && let Some(before) = free_before
    {
        println!(
            "    available: {} bytes ({} bytes in use by the volume)",
            c.available_capacity,
            before - c.available_capacity
        );
    }
    let delete = pb::DeleteVolumeRequest {
        volume_id: volume.volume_id.clone(),
        ..Default::default()
    };
    d.step(
        "DeleteVolume (disk and backing file)",
        Code::Ok,
        ctl.delete_volume(delete.clone()),
    )
    .await;
    d.step(
        "DeleteVolume again (idempotent)",
        Code::Ok,
        ctl.delete_volume(delete),
    )
    .await;
    if let Some(list) = d
        .step(
            "ListVolumes",
            Code::Ok,
            ctl.list_volumes(pb::ListVolumesRequest::default()),
        )
        .await
    {
        println!("    {} volumes", list.entries.len());
        if !list.entries.is_empty() {
            d.failures.push("volumes left after delete".into());
        }
    }
    Ok(())
}

/// A random lower-case UUID, as the external-provisioner's PV names carry.
fn uuid_like() -> String {
    uuid::Uuid::new_v4().to_string()
}

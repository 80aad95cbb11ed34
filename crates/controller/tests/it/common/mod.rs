//! Shared request builders; the running system itself comes from the `sandbox` crate.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::time::Duration;

use csi::v1 as pb;
pub use sandbox::{Sandbox, SandboxOptions};

pub const GIB: i64 = 1 << 30;

pub async fn start() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).await.unwrap()
}

pub async fn start_with(f: impl FnOnce(&mut SandboxOptions)) -> Sandbox {
    let mut o = SandboxOptions::default();
    f(&mut o);
    Sandbox::start(o).await.unwrap()
}

pub fn mount_cap(mode: pb::volume_capability::access_mode::Mode) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(pb::volume_capability::AccessType::Mount(
            pb::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            },
        )),
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn block_cap(mode: pb::volume_capability::access_mode::Mode) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type: Some(pb::volume_capability::AccessType::Block(
            pb::volume_capability::BlockVolume {},
        )),
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn rwo() -> pb::VolumeCapability {
    mount_cap(pb::volume_capability::access_mode::Mode::SingleNodeWriter)
}

pub fn create_req(name: &str, gib: i64) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: gib * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![rwo()],
        ..Default::default()
    }
}

pub fn pvc_name() -> String {
    format!("pvc-{}", uuid::Uuid::new_v4())
}

pub const SHORT: Duration = Duration::from_millis(500);

/// CreateVolume that must succeed; returns the volume.
pub async fn created(
    c: &mut csi::v1::controller_client::ControllerClient<tonic::transport::Channel>,
    req: pb::CreateVolumeRequest,
) -> pb::Volume {
    c.create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

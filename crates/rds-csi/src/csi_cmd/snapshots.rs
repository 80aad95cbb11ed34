//! `rds-csi csi` subcommands of the Controller service: snapshots.

use std::collections::HashMap;
use std::time::Duration;

use clap::Subcommand;
use csi::v1::controller_client::ControllerClient;
use csi::v1::*;
use tonic::transport::Channel;

use super::{CsiCmdError, call, map, parse_kv};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Controller.CreateSnapshot.
    CreateSnapshot {
        /// Snapshot name (the idempotency key).
        #[arg(long)]
        name: String,
        /// Volume id to snapshot.
        #[arg(long = "source-volume")]
        source_volume: String,
        /// Snapshot parameter `key=value`; repeatable.
        #[arg(long = "param", value_parser = parse_kv)]
        params: Vec<(String, String)>,
    },
    /// Controller.DeleteSnapshot.
    DeleteSnapshot {
        /// Snapshot id to delete.
        id: String,
    },
    /// Controller.ListSnapshots (one page).
    ListSnapshots {
        /// Page size; 0 or absent means no limit.
        #[arg(long)]
        max_entries: Option<i32>,
        /// `next_token` from the previous page.
        #[arg(long)]
        starting_token: Option<String>,
        /// Only snapshots of this volume.
        #[arg(long = "source-volume")]
        source_volume: Option<String>,
        /// Only this snapshot.
        #[arg(long = "snapshot")]
        snapshot: Option<String>,
    },
    /// Controller.GetSnapshot.
    GetSnapshot {
        /// Snapshot id to look up.
        id: String,
    },
}

impl SnapshotCommand {
    pub(super) async fn run(self, channel: Channel, t: Duration) -> Result<(), CsiCmdError> {
        let mut controller = ControllerClient::new(channel);
        match self {
            Self::CreateSnapshot {
                name,
                source_volume,
                params,
            } => {
                let req = CreateSnapshotRequest {
                    source_volume_id: source_volume,
                    name,
                    secrets: HashMap::new(),
                    parameters: map(params),
                };
                call(t, "CreateSnapshot", controller.create_snapshot(req)).await
            }
            Self::DeleteSnapshot { id } => {
                let req = DeleteSnapshotRequest {
                    snapshot_id: id,
                    secrets: HashMap::new(),
                };
                call(t, "DeleteSnapshot", controller.delete_snapshot(req)).await
            }
            Self::ListSnapshots {
                max_entries,
                starting_token,
                source_volume,
                snapshot,
            } => {
                let req = ListSnapshotsRequest {
                    max_entries: max_entries.unwrap_or(0),
                    starting_token: starting_token.unwrap_or_default(),
                    source_volume_id: source_volume.unwrap_or_default(),
                    snapshot_id: snapshot.unwrap_or_default(),
                    secrets: HashMap::new(),
                };
                call(t, "ListSnapshots", controller.list_snapshots(req)).await
            }
            Self::GetSnapshot { id } => {
                let req = GetSnapshotRequest {
                    snapshot_id: id,
                    secrets: HashMap::new(),
                };
                call(t, "GetSnapshot", controller.get_snapshot(req)).await
            }
        }
    }
}

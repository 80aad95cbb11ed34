//! ControllerPublish/Unpublish: the fence (`fencing`), the RDS host ACL for
//! host-fenced volumes, and the publish_context the node connects with.

use std::net::IpAddr;

use super::*;

impl ControllerService {
    pub(super) async fn publish(
        &self,
        req: pb::ControllerPublishVolumeRequest,
    ) -> Result<pb::ControllerPublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        if req.node_id.is_empty() {
            return Err(DriverError::InvalidArgument("node ID is required".into()));
        }
        let node = NodeId::parse(&req.node_id)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| DriverError::InvalidArgument("volume capability is required".into()))?;
        if let Some(why) = capability::unsupported(cap) {
            return Err(DriverError::InvalidArgument(format!(
                "invalid volume capability: {why}"
            )));
        }
        let multi = cap
            .access_mode
            .as_ref()
            .is_some_and(|m| m.mode == Mode::MultiNodeMultiWriter as i32);
        let request = PublishRequest {
            volume_id: req.volume_id.clone(),
            node: node.name.clone(),
            sharing: if multi {
                Sharing::MultiNode
            } else {
                Sharing::SingleNode
            },
            volume_context: req.volume_context.clone(),
        };
        // Held from the existence check to the recorded attachment, so a DeleteVolume of the
        // same volume runs wholly before (NOT_FOUND here) or after (refused while attached).
        let held = self.fencing.hold_for_publish(&request).await;
        // The volume must exist before anyone is fenced onto it; an RDS outage is UNAVAILABLE.
        let (id, backend, disk, owned) =
            self.existing(&req.volume_id, Access::Act("attach")).await?;
        let publish_context = publish_context(&id, &backend, &disk, &req.volume_context, cap)?;
        let acl = AclTarget {
            slot: &id.slot,
            client: &backend.client,
        };
        let fenced = owned.marks.host_fencing;
        self.host_acl
            .publish(&request, &node, fenced, acl, &held)
            .await?;
        Ok(pb::ControllerPublishVolumeResponse { publish_context })
    }

    pub(super) async fn unpublish(
        &self,
        req: pb::ControllerUnpublishVolumeRequest,
    ) -> Result<pb::ControllerUnpublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume ID is required".into()));
        }
        // The RDS is only asked about host-fenced volumes, and its failure never fails the
        // detach: a volume deleted on the RDS must still be detachable. An empty node id is
        // CSI's "detach from every node".
        let node = Some(req.node_id.as_str())
            .filter(|n| !n.is_empty())
            .map(NodeId::parse)
            .transpose()?;
        let found = self
            .parse_id(&req.volume_id)
            .ok()
            .and_then(|id| Some((self.backends.get(&id.backend)?.client.clone(), id.slot)));
        let acl = found
            .as_ref()
            .map(|(client, slot)| AclTarget { slot, client });
        let held = self.fencing.hold_for_unpublish(&req.volume_id).await;
        self.host_acl
            .unpublish(&req.volume_id, node.as_ref(), acl, &held)
            .await?;
        Ok(pb::ControllerUnpublishVolumeResponse {})
    }
}

/// The storage paths a node is sent to, and what the volume_context named that was left out.
#[derive(Debug, PartialEq, Eq)]
struct Paths {
    /// Never empty; every one is one of the backend's configured addresses.
    addresses: Vec<IpAddr>,
    dropped: Vec<String>,
}

/// Which storage addresses ControllerPublish hands out. The PV's volume_context says which of
/// the backend's paths the volume uses, but a PV can be written by hand, so it only ever
/// chooses among the addresses the operator configured (`configured`, never empty) and never
/// adds one:
///
/// - `nvmeAddresses` (volumes made since multipath): those of its addresses that are
///   configured, in its order;
/// - only `nvmeAddress` (volumes made before multipath): every configured address, its own
///   first when it is one of them, so existing volumes gain the backend's other paths at their
///   next attach and keep their preferred one;
/// - neither: every configured address.
///
/// When nothing named is configured any more (the storage network was renumbered) the volume
/// gets every configured address, so it stays attachable; the left-out addresses are returned
/// for the log. A malformed value (not IP literals) is INVALID_ARGUMENT, as CreateVolume never
/// writes one.
fn published_paths(configured: &[IpAddr], ctx: &HashMap<String, String>) -> Result<Paths> {
    let get = |k: &str| ctx.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let named: Vec<IpAddr> = match (get(params::C_NVME_ADDRESSES), get(params::C_NVME_ADDRESS)) {
        (Some(list), _) => params::parse_addresses(
            &format!("volume_context {}", params::C_NVME_ADDRESSES),
            list,
        )?,
        (None, Some(one)) => {
            let one: IpAddr = one.parse().map_err(|_| {
                DriverError::InvalidArgument(format!(
                    "volume_context {}={one:?} is not an IP address",
                    params::C_NVME_ADDRESS
                ))
            })?;
            let mut all = vec![one];
            all.extend(configured.iter().filter(|a| **a != one));
            all
        }
        (None, None) => configured.to_vec(),
    };
    let (mut addresses, dropped): (Vec<IpAddr>, Vec<IpAddr>) =
        named.into_iter().partition(|a| configured.contains(a));
    if addresses.is_empty() {
        addresses = configured.to_vec();
    }
    Ok(Paths {
        addresses,
        dropped: dropped.iter().map(IpAddr::to_string).collect(),
    })
}

/// What the node needs to connect, from the RDS's own record of the export (the volume_context
/// may predate a change of port or address).
fn publish_context(
    id: &VolumeId,
    backend: &Backend,
    disk: &Disk,
    volume_context: &HashMap<String, String>,
    cap: &pb::VolumeCapability,
) -> Result<HashMap<String, String>> {
    let paths = published_paths(&backend.nvme_addresses, volume_context)?;
    if !paths.dropped.is_empty() {
        warn!(
            volume = %id,
            backend = %backend.name,
            dropped = %paths.dropped.join(","),
            configured = %backend.nvme_addresses_text(),
            published = %params::format_addresses(&paths.addresses),
            "the volume_context names storage addresses this backend is not configured with; nodes are not sent there"
        );
    }
    let port = disk.nvme_port.ok_or_else(|| {
        DriverError::FailedPrecondition(format!(
            "volume {id} exists on backend {} but is not exported over NVMe/TCP (no nvme-tcp-port)",
            backend.name
        ))
    })?;
    let nqn = match &disk.nvme_nqn {
        Some(nqn) => nqn.clone(),
        None => id
            .nqn()
            .map_err(|e| DriverError::Internal(format!("deriving the NQN of {id}: {e}")))?
            .as_str()
            .to_string(),
    };
    let mut ctx = HashMap::new();
    ctx.insert(PC_NVME_ADDRESS.to_string(), paths.addresses[0].to_string());
    ctx.insert(
        PC_NVME_ADDRESSES.to_string(),
        params::format_addresses(&paths.addresses),
    );
    ctx.insert(PC_NVME_PORT.to_string(), port.to_string());
    ctx.insert(PC_NVME_NQN.to_string(), nqn);
    if let Some(AccessType::Mount(m)) = &cap.access_type {
        let fs = if m.fs_type.is_empty() {
            "ext4"
        } else {
            m.fs_type.as_str()
        };
        ctx.insert(PC_FS_TYPE.to_string(), fs.to_string());
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn ctx(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn paths(configured: &[&str], kv: &[(&str, &str)]) -> (Vec<IpAddr>, Vec<String>) {
        let p = published_paths(&ips(configured), &ctx(kv)).unwrap();
        (p.addresses, p.dropped)
    }

    const TWO: [&str; 2] = ["10.0.1.2", "10.0.2.2"];

    #[test]
    fn a_volume_gets_the_paths_it_chose_in_its_order() {
        let both = [
            ("nvmeAddresses", "10.0.2.2,10.0.1.2"),
            ("nvmeAddress", "10.0.2.2"),
        ];
        assert_eq!(paths(&TWO, &both), (ips(&["10.0.2.2", "10.0.1.2"]), vec![]));
        let one = [("nvmeAddresses", "10.0.2.2"), ("nvmeAddress", "10.0.2.2")];
        assert_eq!(paths(&TWO, &one), (ips(&["10.0.2.2"]), vec![]));
    }

    #[test]
    fn a_pv_attribute_never_adds_an_address_the_operator_did_not_configure() {
        let forged = [
            ("nvmeAddresses", "10.0.1.2,192.0.2.66"),
            ("nvmeAddress", "10.0.1.2"),
        ];
        assert_eq!(
            paths(&TWO, &forged),
            (ips(&["10.0.1.2"]), vec!["192.0.2.66".to_string()])
        );
        // Nothing configured left: the backend's own paths, never the PV's.
        let elsewhere = [
            ("nvmeAddresses", "192.0.2.66"),
            ("nvmeAddress", "192.0.2.66"),
        ];
        assert_eq!(
            paths(&TWO, &elsewhere),
            (ips(&TWO), vec!["192.0.2.66".to_string()])
        );
        // A forged single address (the pre-multipath key) is as powerless.
        let old_forged = [("nvmeAddress", "192.0.2.66")];
        assert_eq!(
            paths(&TWO, &old_forged),
            (ips(&TWO), vec!["192.0.2.66".to_string()])
        );
    }

    #[test]
    fn a_volume_from_before_multipath_keeps_its_address_first_and_gains_the_others() {
        // What CreateVolume wrote before multipath: nvmeAddress and nvmePort, no list.
        let old = [("nvmeAddress", "10.0.2.2"), ("nvmePort", "4420")];
        assert_eq!(paths(&TWO, &old), (ips(&["10.0.2.2", "10.0.1.2"]), vec![]));
        // After an upgrade that keeps one storage address, nothing changes.
        assert_eq!(paths(&["10.0.2.2"], &old), (ips(&["10.0.2.2"]), vec![]));
        // No address at all (a hand-made static PV): the backend's.
        assert_eq!(paths(&TWO, &[]), (ips(&TWO), vec![]));
        assert_eq!(paths(&TWO, &[("nvmeAddress", " ")]), (ips(&TWO), vec![]));
    }

    #[test]
    fn malformed_addresses_are_refused_not_guessed() {
        for kv in [
            [("nvmeAddresses", "10.0.1.2,rds.example")],
            [("nvmeAddresses", "10.0.1.2,,10.0.2.2")],
            [("nvmeAddress", "rds.example")],
        ] {
            let e = published_paths(&ips(&TWO), &ctx(&kv)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{kv:?}");
            assert!(e.to_string().contains(kv[0].0), "{kv:?}: {e}");
        }
    }
}

//! The oldest kubelet the node plugin works with, checked once at start against the Node object.
//!
//! Kubelet before 1.26 dials the CSI socket with a gRPC client that sends the socket path as the
//! HTTP/2 `:authority`; the driver's HTTP/2 server rejects that header as malformed and resets
//! every stream with PROTOCOL_ERROR, so such a kubelet never even registers the plugin and its
//! own logs show only "stream terminated by RST_STREAM". The refusal happens inside the HTTP/2
//! layer, before any driver code sees the request, so the only place the driver can explain it
//! is here: one ERROR line at start naming the cause and the fix.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::kube::api_errors::bounded;
use fencing::cluster::ClusterError;

/// Kubernetes 1.26 is the first release whose kubelet dials CSI sockets with authority
/// `localhost`.
pub const MIN_KUBELET: (u32, u32) = (1, 26);

/// Major and minor of a kubelet version as kubelet reports it (`v1.26.3`, `v1.27.1+k3s1`,
/// `v1.28.2-eks-a5df82a`); `None` when the text does not start that way.
pub fn parse(version: &str) -> Option<(u32, u32)> {
    let v = version.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let mut parts = v.splitn(3, '.');
    let major = leading_number(parts.next()?)?;
    let minor = leading_number(parts.next()?)?;
    Some((major, minor))
}

/// The digits a version component starts with (`26` of `26+`, as some providers report).
fn leading_number(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// Why a kubelet of this version cannot drive the plugin, or `None` when it can (or when the
/// version cannot be read: the driver does not refuse to start on a guess).
pub fn incompatibility(version: &str) -> Option<String> {
    let v = parse(version)?;
    (v < MIN_KUBELET).then(|| {
        format!(
            "kubelet {version} is older than {}.{}, the minimum this driver supports: its gRPC \
             client sends the CSI socket path as the HTTP/2 :authority, which the driver's HTTP/2 \
             server rejects with PROTOCOL_ERROR, so every CSI call from it fails and the plugin \
             never registers. Upgrade the node to Kubernetes {}.{} or later.",
            MIN_KUBELET.0, MIN_KUBELET.1, MIN_KUBELET.0, MIN_KUBELET.1
        )
    })
}

/// The kubelet version the Node `node_name` reports: `None` when there is no such Node or it
/// reports none yet.
pub async fn kubelet_version(
    client: kube::Client,
    node_name: &str,
    timeout: Duration,
) -> Result<Option<String>, ClusterError> {
    let api: Api<Node> = Api::all(client);
    let what = format!("reading Node {node_name}");
    let node = bounded(&what, timeout, api.get_opt(node_name)).await?;
    Ok(node
        .and_then(|n| n.status)
        .and_then(|s| s.node_info)
        .map(|i| i.kubelet_version))
}

/// Reads this node's kubelet version and logs one ERROR when it is too old. Failures to read
/// are logged at debug only: the check is advice, and the node plugin works without it.
pub async fn check_kubelet_version(client: kube::Client, node_name: String, timeout: Duration) {
    let version = match kubelet_version(client, &node_name, timeout).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            tracing::debug!(node = %node_name, "no Node object of this name, or no version in it; kubelet version not checked");
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "kubelet version not checked");
            return;
        }
    };
    match incompatibility(&version) {
        Some(why) => tracing::error!(node = %node_name, kubelet = %version, "{why}"),
        None => tracing::debug!(node = %node_name, kubelet = %version, "kubelet version supported"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_kubelets_report() {
        assert_eq!(parse("v1.20.2"), Some((1, 20)));
        assert_eq!(parse("v1.27.1+k3s1"), Some((1, 27)));
        assert_eq!(parse("v1.28.2-eks-a5df82a"), Some((1, 28)));
        assert_eq!(parse("1.26.0"), Some((1, 26)));
        assert_eq!(parse("v1.26+"), Some((1, 26)));
        assert_eq!(parse(""), None);
        assert_eq!(parse("v1"), None);
        assert_eq!(parse("vX.Y.Z"), None);
    }

    #[test]
    fn older_than_1_26_is_refused_with_cause_and_fix() {
        let why = incompatibility("v1.20.2").expect("1.20 is too old");
        assert!(why.contains(":authority"), "{why}");
        assert!(why.contains("PROTOCOL_ERROR"), "{why}");
        assert!(why.contains("1.26 or later"), "{why}");
        assert!(incompatibility("v1.25.16").is_some());
        assert!(incompatibility("v0.99.0").is_some());
    }

    #[test]
    fn from_1_26_and_unreadable_versions_pass() {
        assert_eq!(incompatibility("v1.26.0"), None);
        assert_eq!(incompatibility("v1.31.2"), None);
        assert_eq!(incompatibility("v2.0.0"), None);
        assert_eq!(incompatibility("unknown"), None);
    }
}

//! AdmissionReview v1: decoding the API server's request and encoding the answer.
//!
//! Hand-written serde types rather than `kube::core::admission`: the guard must echo the
//! request's `uid` even when the object inside cannot be decoded (the API server discards an
//! answer with the wrong uid), which needs the envelope read before the pod, and it avoids the
//! json-patch dependency a validating webhook has no use for. Nothing here can panic on any
//! input: bytes that are not a review become an error review ([`invalid`]), and every answer is
//! a complete `admission.k8s.io/v1` AdmissionReview.

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::error::GuardError;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// The parts of a review request the guard acts on.
#[derive(Debug, Clone)]
pub struct Request {
    pub uid: String,
    pub operation: String,
    pub namespace: String,
    pub name: String,
    /// `kind.kind` of the object (`Pod` for what the guard is registered for).
    pub kind: String,
    pub sub_resource: String,
    /// The object being deleted (`oldObject`), undecoded.
    pub old_object: Option<serde_json::Value>,
    /// `kubectl delete --dry-run=server`: decided the same, but nothing is reported.
    pub dry_run: bool,
}

/// Why a body is not a usable review; `uid` is set when one could be read, so the answer can
/// still be matched to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub uid: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    uid: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: RawKind,
    #[serde(default)]
    sub_resource: String,
    #[serde(default)]
    old_object: Option<serde_json::Value>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawKind {
    #[serde(default)]
    kind: String,
}

/// Decodes an AdmissionReview request body.
pub fn decode(body: &[u8]) -> Result<Request, Invalid> {
    let invalid = |uid: &str, message: String| Invalid {
        uid: uid.to_string(),
        message,
    };
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| invalid("", format!("body is not an AdmissionReview: {e}")))?;
    let uid = env
        .request
        .as_ref()
        .and_then(|r| r.get("uid"))
        .and_then(|u| u.as_str())
        .unwrap_or("")
        .to_string();
    if env.api_version.as_deref() != Some(API_VERSION) || env.kind.as_deref() != Some(KIND) {
        return Err(invalid(
            &uid,
            format!(
                "expected apiVersion {API_VERSION} kind {KIND}, got {} {}",
                env.api_version.as_deref().unwrap_or("(none)"),
                env.kind.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    let Some(request) = env.request else {
        return Err(invalid(&uid, "AdmissionReview has no request".into()));
    };
    let raw: RawRequest = serde_json::from_value(request)
        .map_err(|e| invalid(&uid, format!("AdmissionReview request is malformed: {e}")))?;
    if raw.uid.is_empty() {
        return Err(invalid(
            "",
            "AdmissionReview request has an empty uid".into(),
        ));
    }
    Ok(Request {
        uid: raw.uid,
        operation: raw.operation,
        namespace: raw.namespace,
        name: raw.name,
        kind: raw.kind.kind,
        sub_resource: raw.sub_resource,
        old_object: raw.old_object.filter(|o| !o.is_null()),
        dry_run: raw.dry_run.unwrap_or(false),
    })
}

impl Request {
    /// The pod being deleted, if this is the deletion of a pod and the object decodes.
    pub fn deleted_pod(&self) -> Result<Option<Pod>, GuardError> {
        if self.operation != "DELETE" || self.kind != "Pod" || !self.sub_resource.is_empty() {
            return Ok(None);
        }
        let Some(obj) = &self.old_object else {
            return Err(GuardError::NoOldObject);
        };
        serde_json::from_value(obj.clone())
            .map(Some)
            .map_err(GuardError::NotAPod)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'a str>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    message: &'a str,
    reason: &'static str,
}

/// An allowing answer; `warning` is shown to the client (kubectl prints it).
pub fn allow(uid: &str, warning: Option<&str>) -> Vec<u8> {
    encode(&ResponseOut {
        uid,
        allowed: true,
        status: None,
        warnings: warning.into_iter().collect(),
    })
}

/// A denying answer: the API server turns it into a 403 whose message is `message`, which is
/// what KubeVirt logs when its delete is refused.
pub fn deny(uid: &str, message: &str) -> Vec<u8> {
    encode(&ResponseOut {
        uid,
        allowed: false,
        status: Some(StatusOut {
            code: 403,
            message,
            reason: "Forbidden",
        }),
        warnings: Vec::new(),
    })
}

/// The answer to a body that is not a usable review: not allowed, code 400, saying why.
pub fn invalid(bad: &Invalid) -> Vec<u8> {
    encode(&ResponseOut {
        uid: &bad.uid,
        allowed: false,
        status: Some(StatusOut {
            code: 400,
            message: &bad.message,
            reason: "BadRequest",
        }),
        warnings: Vec::new(),
    })
}

fn encode(response: &ResponseOut<'_>) -> Vec<u8> {
    let review = ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response: ResponseOut {
            uid: response.uid,
            allowed: response.allowed,
            status: response.status.as_ref().map(|s| StatusOut {
                code: s.code,
                message: s.message,
                reason: s.reason,
            }),
            warnings: response.warnings.clone(),
        },
    };
    // Serialising these plain structs (strings, bools, integers) cannot fail; the fallback
    // keeps the function total anyway.
    serde_json::to_vec(&review).unwrap_or_else(|_| {
        format!(r#"{{"apiVersion":"{API_VERSION}","kind":"{KIND}","response":{{"uid":"","allowed":true}}}}"#)
            .into_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(request: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": KIND, "request": request}))
            .unwrap()
    }

    #[test]
    fn a_pod_delete_review_as_the_api_server_sends_it_decodes() {
        let body = review(json!({
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "hp-volume-abcde", "namespace": "vms", "operation": "DELETE",
            "userInfo": {"username": "system:serviceaccount:kubevirt:kubevirt-controller"},
            "object": null,
            "oldObject": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hp-volume-abcde", "namespace": "vms"}},
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}
        }));
        let r = decode(&body).unwrap();
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!((r.operation.as_str(), r.kind.as_str()), ("DELETE", "Pod"));
        let pod = r.deleted_pod().unwrap().unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("hp-volume-abcde"));
    }

    #[test]
    fn answers_are_complete_reviews_echoing_the_uid() {
        let a: serde_json::Value = serde_json::from_slice(&allow("u1", Some("careful"))).unwrap();
        assert_eq!(
            a,
            json!({"apiVersion": API_VERSION, "kind": KIND,
            "response": {"uid": "u1", "allowed": true, "warnings": ["careful"]}})
        );
        let d: serde_json::Value = serde_json::from_slice(&deny("u2", "waiting")).unwrap();
        assert_eq!(
            d["response"],
            json!({"uid": "u2", "allowed": false,
            "status": {"code": 403, "message": "waiting", "reason": "Forbidden"}})
        );
    }

    #[test]
    fn malformed_bodies_are_errors_that_keep_the_uid_when_there_is_one() {
        let e = decode(b"not json").unwrap_err();
        assert_eq!(e.uid, "");
        assert!(e.message.contains("not an AdmissionReview"), "{e:?}");
        let e = decode(
            &serde_json::to_vec(
                &json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND,
            "request": {"uid": "u9"}}),
            )
            .unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.uid, "u9");
        assert!(e.message.contains("admission.k8s.io/v1beta1"), "{e:?}");
        let e = decode(&review(json!({"uid": "u3", "operation": 7}))).unwrap_err();
        assert_eq!(e.uid, "u3");
        assert!(decode(&review(json!({"uid": ""}))).is_err());
        assert!(
            decode(&serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": KIND})).unwrap())
                .is_err()
        );
        let out: serde_json::Value = serde_json::from_slice(&invalid(&e)).unwrap();
        assert_eq!(out["response"]["uid"], "u3");
        assert_eq!(out["response"]["status"]["code"], 400);
    }

    #[test]
    fn only_plain_pod_deletions_carry_a_pod() {
        let r = decode(&review(
            json!({"uid": "u", "operation": "CREATE", "kind": {"kind": "Pod"},
            "object": {"metadata": {"name": "x"}}}),
        ))
        .unwrap();
        assert!(matches!(r.deleted_pod(), Ok(None)));
        let r = decode(&review(
            json!({"uid": "u", "operation": "DELETE", "kind": {"kind": "Pod"},
            "subResource": "status", "oldObject": {}}),
        ))
        .unwrap();
        assert!(matches!(r.deleted_pod(), Ok(None)));
        let r = decode(&review(
            json!({"uid": "u", "operation": "DELETE", "kind": {"kind": "Pod"}}),
        ))
        .unwrap();
        assert!(matches!(r.deleted_pod(), Err(GuardError::NoOldObject)));
        let r = decode(&review(
            json!({"uid": "u", "operation": "DELETE", "kind": {"kind": "Pod"},
            "oldObject": {"metadata": "not a map"}}),
        ))
        .unwrap();
        assert!(matches!(r.deleted_pod(), Err(GuardError::NotAPod(_))));
    }
}

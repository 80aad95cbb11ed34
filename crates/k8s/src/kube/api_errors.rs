//! Turning kube errors and deadline expiries into `ClusterError`, which fencing acts on.
//!
//! The class matters more than the text: fencing retries on `Conflict`, treats `NotFound` as an
//! answer, and must fail closed on `Unavailable`. Anything transport-shaped is therefore
//! `Unavailable`, never `NotFound`.

use std::future::Future;
use std::time::Duration;

use fencing::cluster::ClusterError;

/// Runs one API request under `deadline`; `what` names the request in every error.
pub(crate) async fn bounded<T>(
    what: &str,
    deadline: Duration,
    request: impl Future<Output = Result<T, ::kube::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(deadline, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(what, &e)),
        Err(_) => Err(ClusterError::Unavailable(format!(
            "{what}: no answer from the API server within {deadline:?}"
        ))),
    }
}

pub(crate) fn classify(what: &str, e: &::kube::Error) -> ClusterError {
    use ::kube::Error as E;
    match e {
        E::Api(status) => {
            let msg = format!("{what}: {} ({})", status.message, status.code);
            match status.code {
                409 => ClusterError::Conflict(msg),
                404 => ClusterError::NotFound(msg),
                // 401 means our credentials are not accepted at all: like 403, retrying will
                // not help until an operator fixes RBAC or the token.
                401 | 403 => ClusterError::Forbidden(msg),
                429 | 500..=599 => ClusterError::Unavailable(msg),
                _ => ClusterError::Other(msg),
            }
        }
        E::HyperError(_) | E::Service(_) | E::HttpError(_) | E::RustlsTls(_) | E::Auth(_) => {
            ClusterError::Unavailable(format!("{what}: {}", chain(e)))
        }
        _ => ClusterError::Other(format!("{what}: {}", chain(e))),
    }
}

/// The whole source chain: hyper's top-level messages ("client error (Connect)") hide the cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> ::kube::Error {
        ::kube::Error::Api(
            ::kube::core::Status::failure("boom", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    fn class(e: &ClusterError) -> &'static str {
        match e {
            ClusterError::Conflict(_) => "conflict",
            ClusterError::NotFound(_) => "not-found",
            ClusterError::Unavailable(_) => "unavailable",
            ClusterError::Forbidden(_) => "forbidden",
            ClusterError::Other(_) => "other",
        }
    }

    #[test]
    fn status_codes_map_to_the_class_fencing_acts_on() {
        let cases = [
            (409, "conflict"),
            (404, "not-found"),
            (403, "forbidden"),
            (401, "forbidden"),
            (500, "unavailable"),
            (503, "unavailable"),
            (429, "unavailable"),
            (422, "other"),
        ];
        for (code, want) in cases {
            let e = classify("patching PV pv-1", &api(code));
            assert_eq!(class(&e), want, "{code} -> {e:?}");
            assert!(e.to_string().contains("patching PV pv-1"), "{e}");
        }
    }

    #[tokio::test]
    async fn an_expired_deadline_is_unavailable_and_says_so() {
        let e = bounded::<()>(
            "listing nodes",
            Duration::from_millis(10),
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ClusterError::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("listing nodes"), "{e}");
        assert!(e.to_string().contains("within 10ms"), "{e}");
    }
}

//! What each admin path answers, over a [`NodeView`]: pure (no sockets, no clock), so every
//! answer is tested without a listener.
//!
//! | path         | answer                                                                |
//! |--------------|-----------------------------------------------------------------------|
//! | `/metrics`   | OpenMetrics text (`crate::metrics`)                                   |
//! | `/livez`     | 200 `ok`: the process serves HTTP                                     |
//! | `/readyz`    | 200 `{"ready":true}`, or 503 with the reasons as JSON                 |
//! | `/v1/status` | the node's status as JSON (version, node, listeners, disk, counts)    |
//!
//! Only GET and HEAD are served (405 otherwise); a request with a body is refused (413):
//! nothing here takes input beyond the path.

use serde::Serialize;

/// What the admin listener reads from the node.
pub trait NodeView: Send + Sync + 'static {
    /// Whether the node is ready to serve, and if not, why.
    fn readiness(&self) -> Readiness;
    /// The node's status.
    fn status(&self) -> StatusReport;
    /// The metrics as OpenMetrics text.
    fn metrics_text(&self) -> Result<String, std::fmt::Error>;
}

/// `/readyz`'s verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Ready to serve.
    pub ready: bool,
    /// Why not (empty when ready), one sentence each.
    pub reasons: Vec<String>,
}

impl Readiness {
    /// Ready unless `reasons` has any.
    pub fn from_reasons(reasons: Vec<String>) -> Self {
        Self {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

/// Where the node listens, for `/v1/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusListeners {
    /// QUIC (UDP).
    pub quic: String,
    /// Kafka plaintext (TCP), if on.
    pub kafka: Option<String>,
    /// Kafka TLS (TCP), if on.
    pub kafka_tls: Option<String>,
    /// This admin listener (TCP).
    pub admin: Option<String>,
}

/// The data directory's disk, for `/v1/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusDisk {
    /// The disk backend (`io_uring` or `std`).
    pub backend: String,
    /// Bytes of every partition log.
    pub log_bytes: u64,
    /// Size of the data directory's filesystem, if it could be read.
    pub filesystem_bytes: Option<u64>,
    /// Bytes available on it to the node, if it could be read.
    pub filesystem_available_bytes: Option<u64>,
    /// Whether the disk guard refuses produce (`limits.disk_usage_*`).
    pub full: bool,
    /// Why, if it does.
    pub full_reason: Option<String>,
}

/// `/v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    /// `ledge-node`'s version.
    pub version: String,
    /// This node's id.
    pub node_id: u32,
    /// The cluster's id, in a `[cluster]`.
    pub cluster_id: Option<String>,
    /// Where the node listens.
    pub listeners: StatusListeners,
    /// The data directory.
    pub data_dir: String,
    /// Whether it is on a read-only filesystem (reads only).
    pub read_only: bool,
    /// Its disk.
    pub disk: StatusDisk,
    /// Topics, internal ones included.
    pub topics: u64,
    /// Partitions this node holds.
    pub partitions: u64,
    /// Of those, offline.
    pub partitions_offline: u64,
    /// `/readyz`'s verdict.
    pub health: Readiness,
}

/// An answer: status code, content type and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// `Content-Type` of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

fn json(status: u16, value: &impl Serialize) -> Answer {
    match serde_json::to_string(value) {
        Ok(body) => Answer {
            status,
            content_type: JSON,
            body,
        },
        Err(error) => text(500, format!("cannot encode the answer: {error}")),
    }
}

fn text(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        content_type: TEXT,
        body: body.into(),
    }
}

/// What the request is, as far as routing needs: its method, path (no query) and whether
/// it carries a body.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// A `Content-Length` above zero or a `Transfer-Encoding`.
    pub has_body: bool,
}

/// The answer to one request.
pub fn answer(request: RequestHead<'_>, view: &dyn NodeView) -> Answer {
    if request.has_body {
        return text(413, "the admin listener takes no request bodies\n");
    }
    if request.method != "GET" && request.method != "HEAD" {
        return text(405, "only GET and HEAD are served\n");
    }
    match request.path {
        "/metrics" => match view.metrics_text() {
            Ok(body) => Answer {
                status: 200,
                content_type: OPENMETRICS_CONTENT_TYPE,
                body,
            },
            Err(_) => text(500, "cannot encode the metrics\n"),
        },
        "/livez" => text(200, "ok\n"),
        "/readyz" => {
            let readiness = view.readiness();
            json(if readiness.ready { 200 } else { 503 }, &readiness)
        }
        "/v1/status" => json(200, &view.status()),
        _ => text(
            404,
            "not found; the admin listener serves /metrics, /livez, /readyz and /v1/status\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        reasons: Vec<String>,
    }

    impl NodeView for Fixed {
        fn readiness(&self) -> Readiness {
            Readiness::from_reasons(self.reasons.clone())
        }
        fn status(&self) -> StatusReport {
            StatusReport {
                version: "0.1.0".into(),
                node_id: 7,
                cluster_id: None,
                listeners: StatusListeners::default(),
                data_dir: "d".into(),
                read_only: false,
                disk: StatusDisk::default(),
                topics: 2,
                partitions: 3,
                partitions_offline: 0,
                health: self.readiness(),
            }
        }
        fn metrics_text(&self) -> Result<String, std::fmt::Error> {
            Ok("# EOF\n".into())
        }
    }

    fn get(path: &str, view: &dyn NodeView) -> Answer {
        answer(
            RequestHead {
                method: "GET",
                path,
                has_body: false,
            },
            view,
        )
    }

    #[test]
    fn each_path_answers_as_documented() {
        let ready = Fixed { reasons: vec![] };
        let metrics = get("/metrics", &ready);
        assert_eq!(metrics.status, 200);
        assert_eq!(metrics.content_type, OPENMETRICS_CONTENT_TYPE);
        assert_eq!(get("/livez", &ready).status, 200);
        let readyz = get("/readyz", &ready);
        assert_eq!(readyz.status, 200);
        assert_eq!(readyz.body, r#"{"ready":true,"reasons":[]}"#);
        let status: serde_json::Value =
            serde_json::from_str(&get("/v1/status", &ready).body).unwrap();
        assert_eq!(status["node_id"], 7);
        assert_eq!(status["health"]["ready"], true);
        assert_eq!(get("/nope", &ready).status, 404);
    }

    #[test]
    fn not_ready_is_503_with_the_reasons() {
        let offline = Fixed {
            reasons: vec!["partition t-0 is offline: torn".into()],
        };
        let readyz = get("/readyz", &offline);
        assert_eq!(readyz.status, 503);
        let body: serde_json::Value = serde_json::from_str(&readyz.body).unwrap();
        assert_eq!(body["ready"], false);
        assert_eq!(body["reasons"][0], "partition t-0 is offline: torn");
        // Liveness does not depend on readiness.
        assert_eq!(get("/livez", &offline).status, 200);
    }

    #[test]
    fn bodies_and_other_methods_are_refused() {
        let view = Fixed { reasons: vec![] };
        let with_body = answer(
            RequestHead {
                method: "GET",
                path: "/metrics",
                has_body: true,
            },
            &view,
        );
        assert_eq!(with_body.status, 413);
        let post = answer(
            RequestHead {
                method: "POST",
                path: "/metrics",
                has_body: false,
            },
            &view,
        );
        assert_eq!(post.status, 405);
    }
}

//! `ledge-node cluster-init`: writes a local test cluster's CA, node certificates and config
//! files into one directory.
//!
//! Layout for `--nodes 3 --dir DIR --base-port 9100`:
//!
//! ```text
//! DIR/node-1.toml ... node-3.toml   one config per node (QUIC on UDP 127.0.0.1:9101..9103,
//!                                   Kafka on TCP 127.0.0.1:9101..9103, admin HTTP on
//!                                   TCP 127.0.0.1:9645..9647)
//! DIR/data/node-1 ... node-3        each node's data directory, holding only
//!                                   `controller/bootstrap` (the marker that lets the voter's
//!                                   first start initialize the controller quorum)
//! DIR/tls/ca.pem, ca.key            the cluster CA (the key is mode 0600)
//! DIR/tls/node-1.pem, node-1.key    each node's certificate and key
//! ```
//!
//! A directory that already holds a cluster (any of those config or TLS files) is refused
//! unless `force` is set; data directories are never deleted, even then. Files are written
//! durably (temporary name, fsync, rename), keys first and configs last.

use std::path::{Path, PathBuf};

use super::NodeId;
use super::identity::{GenerateError, GeneratedCa};
use crate::storage::DiskError;
use crate::storage::disk::durable::{create_dir_all_durable, write_file_durable};

/// Node N of a local test cluster serves its admin listener on TCP `127.0.0.1:<this>+N`.
pub const ADMIN_BASE_PORT: u16 = 9644;
/// Default `--base-port`: node N listens on UDP `127.0.0.1:<base>+N` (9101, 9102, ...), clear
/// of the single node's default 9092.
pub const BASE_PORT_DEFAULT: u16 = 9100;
/// Most nodes `cluster-init` writes (a local test cluster; [`super::config::CLUSTER_NODES_MAX`]
/// bounds real ones).
pub const INIT_NODES_MAX: u32 = 64;

/// What to write.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Number of nodes (ids 1..=nodes).
    pub nodes: u32,
    /// The directory to write into (created if missing).
    pub dir: PathBuf,
    /// Node N listens on `127.0.0.1:<base_port + N>`.
    pub base_port: u16,
    /// Replace the config and TLS files of an existing cluster.
    pub force: bool,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The new cluster's id.
    pub cluster_id: String,
    /// The CA certificate clients and nodes trust.
    pub ca_file: PathBuf,
    /// Per node: id, address, config file, data directory, certificate.
    pub nodes: Vec<InitNode>,
    /// Data directories that existed already and were left as they were.
    pub data_dirs_kept: Vec<PathBuf>,
}

/// One node `cluster-init` wrote.
#[derive(Clone, Debug)]
pub struct InitNode {
    /// Node id.
    pub id: NodeId,
    /// UDP address of its QUIC endpoint.
    pub address: std::net::SocketAddr,
    /// Its config file.
    pub config_file: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its certificate.
    pub cert_file: PathBuf,
}

/// Why `cluster-init` wrote nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `--nodes` out of range.
    #[error("--nodes must be 1..={INIT_NODES_MAX}, got {0}")]
    Nodes(u32),
    /// The ports would run past 65535.
    #[error(
        "--base-port {base_port} + {nodes} nodes runs past port 65535; choose a lower --base-port"
    )]
    Ports {
        /// `--base-port`.
        base_port: u16,
        /// `--nodes`.
        nodes: u32,
    },
    /// The directory holds a cluster already.
    #[error("{} already holds a cluster ({}); pass --force to replace its config and TLS files (data directories are kept), or choose another --dir", dir.display(), summary(found))]
    Exists {
        /// The directory.
        dir: PathBuf,
        /// The files found.
        found: Vec<String>,
    },
    /// The directory's path cannot be written into a TOML file.
    #[error("{}: the path is not valid UTF-8, which the config files need", .0.display())]
    Path(PathBuf),
    /// Reading the directory failed.
    #[error("{}: {cause}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] DiskError),
    /// Generating keys or certificates failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// The first few names, and how many more.
fn summary(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// Writes the cluster described by `options`.
pub fn init(options: &InitOptions) -> Result<InitReport, InitError> {
    if options.nodes == 0 || options.nodes > INIT_NODES_MAX {
        return Err(InitError::Nodes(options.nodes));
    }
    if u32::from(options.base_port) + options.nodes > u32::from(u16::MAX) {
        return Err(InitError::Ports {
            base_port: options.base_port,
            nodes: options.nodes,
        });
    }
    create_dir_all_durable(&options.dir)?;
    let dir = std::fs::canonicalize(&options.dir).map_err(|cause| InitError::Read {
        path: options.dir.clone(),
        cause,
    })?;
    if dir.to_str().is_none() {
        return Err(InitError::Path(dir));
    }
    if !options.force {
        let found = existing_cluster_files(&dir)?;
        if !found.is_empty() {
            return Err(InitError::Exists { dir, found });
        }
    }
    let cluster_id = new_cluster_id()?;
    let tls_dir = dir.join("tls");
    create_dir_all_durable(&tls_dir)?;
    // Each node creates its own data directory; their parent is made here so the layout
    // is visible at once.
    create_dir_all_durable(&dir.join("data"))?;
    let ca = GeneratedCa::generate(&cluster_id)?;
    write_file_durable(&tls_dir.join("ca.key"), ca.key_pem.as_bytes(), 0o600)?;
    write_file_durable(&tls_dir.join("ca.pem"), ca.cert_pem.as_bytes(), 0o644)?;
    let ids: Vec<NodeId> = (1..=options.nodes).collect();
    let address = |id: NodeId| {
        let port = u16::try_from(u32::from(options.base_port) + id)
            .expect("checked against u16::MAX above");
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    };
    let mut nodes = Vec::with_capacity(ids.len());
    let mut data_dirs_kept = Vec::new();
    for &id in &ids {
        let node = ca.node(&cluster_id, id)?;
        write_file_durable(
            &tls_dir.join(format!("node-{id}.key")),
            node.key_pem.as_bytes(),
            0o600,
        )?;
        let cert_file = tls_dir.join(format!("node-{id}.pem"));
        write_file_durable(&cert_file, node.cert_pem.as_bytes(), 0o644)?;
        let data_dir = dir.join("data").join(format!("node-{id}"));
        if holds_node_data(&data_dir) {
            data_dirs_kept.push(data_dir.clone());
        }
        nodes.push(InitNode {
            id,
            address: address(id),
            config_file: dir.join(format!("node-{id}.toml")),
            data_dir,
            cert_file,
        });
    }
    // Every node is a voter (`controller_voters` lists them all): each one's first start may
    // initialize the controller quorum. A kept data directory whose store holds a quorum
    // already consumes the marker at its next start without using it.
    let marker = crate::controller::bootstrap::marker_text(&cluster_id, &ids);
    for node in &nodes {
        let marker_path = crate::controller::bootstrap::marker_path(&node.data_dir);
        if let Some(controller_dir) = marker_path.parent() {
            create_dir_all_durable(controller_dir)?;
        }
        write_file_durable(&marker_path, marker.as_bytes(), 0o644)?;
    }
    for node in &nodes {
        let text = node_config_text(&cluster_id, node, &nodes);
        write_file_durable(&node.config_file, text.as_bytes(), 0o644)?;
    }
    Ok(InitReport {
        cluster_id,
        ca_file: tls_dir.join("ca.pem"),
        nodes,
        data_dirs_kept,
    })
}

/// Whether a node's data directory holds anything but the bootstrap marker an earlier
/// `cluster-init` wrote (what a forced re-init keeps and reports).
fn holds_node_data(data_dir: &Path) -> bool {
    let others = |dir: &Path, ours: &[&str]| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                !ours.iter().any(|our| name == *our)
            })
        })
    };
    let controller = data_dir.join(crate::controller::store::CONTROLLER_DIR_NAME);
    others(data_dir, &[crate::controller::store::CONTROLLER_DIR_NAME])
        || others(
            &controller,
            &[crate::controller::bootstrap::BOOTSTRAP_MARKER_FILE],
        )
}

/// The config and TLS files of a cluster found in `dir`.
fn existing_cluster_files(dir: &Path) -> Result<Vec<String>, InitError> {
    let mut found = Vec::new();
    for (folder, prefix) in [(dir.to_path_buf(), ""), (dir.join("tls"), "tls/")] {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(cause) => {
                return Err(InitError::Read {
                    path: folder,
                    cause,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|cause| InitError::Read {
                path: folder.clone(),
                cause,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = if prefix.is_empty() {
                name.starts_with("node-") && name.ends_with(".toml")
            } else {
                name == "ca.pem" || name == "ca.key" || name.starts_with("node-")
            };
            if ours {
                found.push(format!("{prefix}{name}"));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// 16 random bytes as 32 lowercase hex digits: a valid DNS label for the certificates.
fn new_cluster_id() -> Result<String, InitError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| InitError::Random)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// A TOML string literal (quoted and escaped).
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn node_config_text(cluster_id: &str, node: &InitNode, nodes: &[InitNode]) -> String {
    use std::fmt::Write;
    let count = u32::try_from(nodes.len()).expect("at most INIT_NODES_MAX nodes");
    let replication_factor = count.min(3);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Node {} of a local Ledge cluster of {count} written by `ledge-node cluster-init`.",
        node.id
    );
    let _ = writeln!(
        text,
        "# Start it with: ledge-node --config {}",
        node.config_file.display()
    );
    let _ = writeln!(
        text,
        "# Certificate paths are relative to this file; see docs/OPERATIONS.md for every key.\n"
    );
    let _ = writeln!(text, "[node]");
    let _ = writeln!(
        text,
        "data_dir = {}",
        quoted(&node.data_dir.to_string_lossy())
    );
    let _ = writeln!(text, "listen = {}\n", quoted(&node.address.to_string()));
    // Each node's own Kafka port: TCP on its QUIC port (separate port spaces), which is also
    // where the other nodes' Metadata answers send Kafka clients.
    let _ = writeln!(text, "[kafka]");
    let _ = writeln!(text, "listen = {}\n", quoted(&node.address.to_string()));
    // Each node's own admin port (/metrics, /livez, /readyz, /v1/status): node N on
    // 127.0.0.1:<9644 + N>, beside the single node's default 9644.
    let admin_port = u16::try_from(u32::from(ADMIN_BASE_PORT) + node.id).unwrap_or(0);
    let _ = writeln!(text, "[admin]");
    let _ = writeln!(text, "listen = \"127.0.0.1:{admin_port}\"\n");
    let _ = writeln!(text, "[cluster]");
    let _ = writeln!(text, "node_id = {}", node.id);
    let _ = writeln!(text, "cluster_id = {}", quoted(cluster_id));
    let _ = writeln!(text, "peers = [");
    for peer in nodes {
        let _ = writeln!(
            text,
            "  {{ id = {}, address = {} }},",
            peer.id,
            quoted(&peer.address.to_string())
        );
    }
    let _ = writeln!(text, "]");
    let voters: Vec<String> = nodes.iter().map(|peer| peer.id.to_string()).collect();
    let _ = writeln!(text, "controller_voters = [{}]", voters.join(", "));
    let _ = writeln!(text, "ca_file = \"tls/ca.pem\"");
    let _ = writeln!(text, "cert_file = \"tls/node-{}.pem\"", node.id);
    let _ = writeln!(text, "key_file = \"tls/node-{}.key\"", node.id);
    let _ = writeln!(text, "default_replication_factor = {replication_factor}");
    let _ = writeln!(text, "min_insync_replicas = {}", replication_factor.min(2));
    text
}

impl InitReport {
    /// What was written and how to start the nodes, for a person (columns line up).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut rows = vec![[
            "NODE".to_string(),
            "ADDRESS (UDP)".to_string(),
            "CONFIG".to_string(),
            "DATA DIR".to_string(),
            "CERTIFICATE".to_string(),
        ]];
        for node in &self.nodes {
            rows.push([
                node.id.to_string(),
                node.address.to_string(),
                node.config_file.display().to_string(),
                node.data_dir.display().to_string(),
                node.cert_file.display().to_string(),
            ]);
        }
        let mut widths = [0usize; 5];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        let _ = writeln!(
            text,
            "wrote cluster {} with {} node(s)",
            self.cluster_id,
            self.nodes.len()
        );
        let _ = writeln!(text, "cluster CA: {}\n", self.ca_file.display());
        for row in &rows {
            let mut line = String::new();
            for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
                if index + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            let _ = writeln!(text, "{line}");
        }
        for kept in &self.data_dirs_kept {
            let _ = writeln!(
                text,
                "\nkept the existing data directory {} (it belongs to the previous cluster; delete it for a fresh start)",
                kept.display()
            );
        }
        let _ = writeln!(text, "\nstart each node (one terminal each):");
        for node in &self.nodes {
            let _ = writeln!(text, "  ledge-node --config {}", node.config_file.display());
        }
        if let Some(first) = self.nodes.first() {
            let _ = writeln!(text, "\nthen talk to it:");
            let _ = writeln!(
                text,
                "  ledge --server {} --ca {} topic list",
                first.address,
                self.ca_file.display()
            );
        }
        text
    }
}

#[cfg(test)]
mod tests;

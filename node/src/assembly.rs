//! How a node's services are put together once its broker is open: one sequence, used by
//! the binary (`main.rs`) and the multi-node simulator (`sim/multi.rs`), so the simulator
//! runs what production runs. A copy of this wiring in the simulator once missed a step
//! (each node's share of producer ids) and the simulator found a "bug" production did
//! not have, while production's own steps went untested.
//!
//! What differs between the two is passed in: the disk, the clock, the peer clients (QUIC
//! or simulated links), the storage id and incarnation id (system randomness or the
//! seed), and openraft's election timeout (the simulator gives each node its own).
//!
//! The order, as the binary runs it:
//! 1. [`start_broker_drivers`]: transforms, retention, the group timer, the verifier;
//! 2. the binary starts serving clients and peers;
//! 3. [`start_cluster_services`]: the controller and the node's session, the broker's
//!    view of the cluster, the materializer, the offsets loader, plug-ins (modules and
//!    transforms on leaders), replication.

use std::path::Path;
use std::sync::Arc;

use crate::broker::Broker;
use crate::broker::cluster_view::ClusterSource;
use crate::broker::plugin_cluster::PluginClusterParts;
use crate::controller::peer_link::{
    ClusterStartError, NodeCluster, NodeClusterLinks, start_node_cluster_over,
};
use crate::replication::manager::ReplicationSettings;
use crate::replication::peer_link::{PeerReplicaTransport, register_replication_handlers};
use crate::storage::Disk;

/// Why a node's cluster services did not start.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// The controller or the node's session did not start.
    #[error("cannot start the controller: {0}")]
    Controller(#[from] ClusterStartError),
    /// Replication's peer handlers could not be registered.
    #[error("cannot start replication: {0}")]
    Replication(#[from] crate::cluster::peer::service::AlreadyRegistered),
}

/// The broker's own drivers. On a read-only data directory, transforms and retention do
/// not run (they would write). In a `[cluster]` transforms start later, once linked to the
/// cluster ([`start_cluster_services`]): they run only where their input partitions are led.
pub async fn start_broker_drivers<D: Disk>(
    broker: &Arc<Broker<D>>,
    read_only: bool,
    cluster: bool,
) {
    if !read_only {
        if !cluster {
            broker.transforms().start().await;
        }
        tokio::spawn(Arc::clone(broker).run_retention());
    }
    tokio::spawn(Arc::clone(broker).run_group_timer());
    tokio::spawn(Arc::clone(broker).run_verifier());
}

/// Starts a `[cluster]` node's services over `links` (made by the caller: QUIC clients in
/// the binary, simulated links in the simulator): the controller wiring
/// ([`start_node_cluster_over`]), then the broker's view of the cluster, the materializer
/// (the topics this node hosts follow the image), the offsets loader (groups are
/// coordinated by the leaders of their `__consumer_offsets` partitions), and partition
/// replication (the driver answers replica fetches as leader and fetches as follower over
/// the same peer clients). On an error, whatever started is stopped.
pub async fn start_cluster_services<D: Disk>(
    broker: &Arc<Broker<D>>,
    links: NodeClusterLinks<'_>,
    disk: D,
    data_dir: &Path,
    run_transforms: bool,
) -> Result<NodeCluster, AssemblyError> {
    let cluster = links.cluster;
    let handlers = links.handlers;
    let node_cluster = start_node_cluster_over(links, disk, data_dir).await?;
    let Some(controller) = node_cluster.controller.clone() else {
        return Ok(node_cluster);
    };
    let leader_of = Arc::clone(&controller);
    broker.set_cluster_source(ClusterSource {
        image: controller.subscribe(),
        controller: Box::new(move || leader_of.leader()),
        cluster_id: cluster.cluster_id.clone(),
        admin: Some(Arc::clone(&node_cluster.admin)),
        node_epoch: node_cluster.node_epoch.clone(),
    });
    // Users and ACLs are the controller's: changes go through it, the view follows the image.
    if let Some(store) = broker.security_store() {
        store.link_cluster(Arc::clone(&node_cluster.admin), controller.subscribe());
        tokio::spawn(Arc::clone(store).follow_image());
    }
    // The materializer replays the image from the controller's store first.
    tokio::spawn(Arc::clone(broker).run_materializer());
    tokio::spawn(Arc::clone(broker).run_offsets_loader());
    // Modules and transforms follow the image; transforms run on the leaders of their input
    // partitions (not on a read-only data directory: `run_transforms`).
    let plugins = PluginClusterParts {
        handlers,
        clients: node_cluster.clients.clone(),
        run_transforms,
    };
    if let Err(error) = broker.start_plugin_cluster(plugins).await {
        tracing::error!(%error, "cannot start plug-ins in the cluster");
    }
    let transport = PeerReplicaTransport::new(
        cluster.node_id,
        node_cluster.clients.clone(),
        Some(Arc::clone(&controller)),
        cluster.controller_voters.clone(),
    );
    let settings = ReplicationSettings::from_cluster(cluster);
    // `None`: replication was started on this broker already (not in one node start).
    if let Some(manager) = broker.start_replication(settings, Arc::new(transport)) {
        // The checkpoint is written only where the node writes its data directory, which is
        // where it runs transforms (`run_transforms` is false on a read-only one).
        manager
            .load_high_watermark_checkpoint(data_dir, run_transforms)
            .await;
        if let Err(error) = register_replication_handlers(
            handlers,
            Arc::clone(&manager),
            Some(Arc::clone(&controller)),
        ) {
            node_cluster.shutdown().await;
            return Err(error.into());
        }
        tokio::spawn(manager.run(controller.subscribe(), node_cluster.node_epoch.clone()));
    }
    Ok(node_cluster)
}

//! `SimNode`: one real node (a [`Broker`] on a [`SimDisk`]) that the simulator can run,
//! crash at any point and restart.
//!
//! Each incarnation of the node lives in its own tokio current-thread runtime, started
//! paused: the simulator moves it forward by simulated milliseconds with
//! [`SimNode::advance`], and a crash drops the runtime, which ends every task of the node
//! at once (the writer actors, the group timer, requests being handled) as a power loss
//! does, after [`SimDisk::crash`] has killed every file handle. The next incarnation opens
//! the same disk, as a rebooted machine would.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ledge_protocol::wire::{Request, Response};

use crate::broker::{Broker, BrokerConfig};
use crate::clock::{self, SimClock};
use crate::sim::SimDisk;
use crate::sim::net::{ConnectionId, Endpoint, NodeId};
use crate::wasm::PluginExecutor;

/// The data directory on every simulated node's disk.
pub const DATA_DIR: &str = "/data";

/// An answer the node has finished, waiting for the simulator to put it on the network.
#[derive(Debug)]
pub struct Answer {
    /// Who asked.
    pub client: Endpoint,
    /// On which connection.
    pub connection: ConnectionId,
    /// The request's id.
    pub request_id: u64,
    /// The incarnation that answered.
    pub incarnation: u64,
    /// The answer.
    pub response: Response,
}

struct Running {
    runtime: tokio::runtime::Runtime,
    broker: Arc<Broker<SimDisk>>,
}

/// One simulated node.
pub struct SimNode {
    id: NodeId,
    disk: SimDisk,
    config: BrokerConfig,
    /// Counts starts and disk errors: answers carry the incarnation that produced them,
    /// so checkers know whether a crash (or a disk error, after which a fenced partition
    /// recovers from what was synced, as after a crash) came between two observations.
    incarnation: Arc<Mutex<Incarnation>>,
    running: Option<Running>,
    answers: Arc<Mutex<Vec<Answer>>>,
}

/// The node's incarnation counter, whether an injected disk error is yet to strike, and
/// how many ENOSPC or EROFS refusals it has seen.
#[derive(Default)]
struct Incarnation {
    number: u64,
    fault_pending: bool,
    storage_refusals: u64,
}

impl Incarnation {
    /// The incarnation now, moving on if a pending disk error has struck or the disk has
    /// refused an operation for space or a read-only filesystem since the last look (a
    /// refused segment roll fences the partition, and its reopen cuts what was not synced,
    /// as a crash would).
    fn current(&mut self, disk: &SimDisk) -> u64 {
        if self.fault_pending && !disk.fault_pending() {
            self.fault_pending = false;
            self.number += 1;
        }
        let refusals = disk.storage_refusals();
        if refusals != self.storage_refusals {
            self.storage_refusals = refusals;
            self.number += 1;
        }
        self.number
    }
}

impl SimNode {
    /// A node that has not started yet, on a fresh disk.
    pub fn new(id: NodeId, disk_seed: u64, mut config: BrokerConfig) -> Self {
        config.node_id = id;
        // Plug-in work on the node's one thread: a seed with transforms replays exactly.
        config.plugin_executor = PluginExecutor::Inline;
        Self {
            id,
            disk: SimDisk::new(disk_seed),
            config,
            incarnation: Arc::new(Mutex::new(Incarnation::default())),
            running: None,
            answers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's disk (for faults and power-off).
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// The node's incarnation: moves on at every start, when a disk error is injected and
    /// when it strikes.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current(&self.disk)
    }

    /// The next disk write (`write: true`) or sync fails with EIO.
    pub fn inject_disk_error(&mut self, write: bool) {
        if write {
            self.disk.fail_next_write(libc::EIO);
        } else {
            self.disk.fail_next_sync(libc::EIO);
        }
        let mut incarnation = self
            .incarnation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        incarnation.number += 1;
        incarnation.fault_pending = true;
    }

    /// Whether the node is up.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts (or restarts) the node on its disk: `Broker::open`, then the drivers the
    /// binary starts (`node/src/main.rs`): transforms, retention, the group timer and the
    /// verifier. `wall_ms` is the wall time the node's clock reads at start.
    pub fn start(&mut self, wall_ms: i64) -> Result<(), String> {
        if self.running.is_some() {
            return Ok(());
        }
        let runtime = crate::sim::node_runtime(u64::from(self.id))
            .map_err(|error| format!("cannot build the node's runtime: {error}"))?;
        let disk = self.disk.clone();
        let config = self.config.clone();
        let broker = runtime.block_on(async move {
            let broker = Broker::open(
                disk,
                Path::new(DATA_DIR),
                config,
                Arc::new(SimClock::new(wall_ms)),
            )
            .await
            .map_err(|error| error.to_string())?;
            let broker = Arc::new(broker);
            broker.transforms().start().await;
            tokio::spawn(Arc::clone(&broker).run_retention());
            tokio::spawn(Arc::clone(&broker).run_group_timer());
            tokio::spawn(Arc::clone(&broker).run_verifier());
            Ok::<_, String>(broker)
        })?;
        {
            let mut incarnation = self
                .incarnation
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            incarnation.number += 1;
            incarnation.fault_pending = self.disk.fault_pending();
            incarnation.storage_refusals = self.disk.storage_refusals();
        }
        self.running = Some(Running { runtime, broker });
        Ok(())
    }

    /// Power loss now: the disk keeps what it keeps (see [`SimDisk::crash`]) and every task
    /// of the node ends without running another step.
    pub fn crash(&mut self) {
        self.crash_with(|disk| disk.crash());
    }

    /// Reboot after the filesystem turned read-only: as [`SimNode::crash`], but nothing
    /// unsynced survives (see [`SimDisk::crash_dropping_unsynced`]); the disk is writable.
    pub fn crash_dropping_unsynced(&mut self) {
        self.crash_with(|disk| disk.crash_dropping_unsynced());
    }

    fn crash_with(&mut self, crash_disk: impl FnOnce(&SimDisk)) {
        // The disk first: destructors that run while the runtime is dropped must find every
        // file handle dead, as after a real power loss.
        crash_disk(&self.disk);
        if let Some(running) = self.running.take() {
            drop(running.broker);
            running.runtime.shutdown_background();
        }
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Hands a request to the node; its answer appears in [`SimNode::take_answers`] once
    /// the node has run far enough. A stopped node loses it.
    pub fn deliver(
        &mut self,
        client: Endpoint,
        connection: ConnectionId,
        request_id: u64,
        request: Request,
    ) {
        let Some(running) = &self.running else {
            return;
        };
        let broker = Arc::clone(&running.broker);
        let answers = Arc::clone(&self.answers);
        let incarnation = Arc::clone(&self.incarnation);
        let disk = self.disk.clone();
        running.runtime.spawn(async move {
            let response = broker.handle(request).await;
            let incarnation = incarnation
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .current(&disk);
            answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Answer {
                    client,
                    connection,
                    request_id,
                    incarnation,
                    response,
                });
        });
    }

    /// Runs the node for `duration` of simulated time: every task that can run does, and
    /// the paused clock jumps from timer to timer.
    pub fn advance(&mut self, duration: Duration) {
        if let Some(running) = &self.running {
            // The sleep is made inside the runtime: outside it, tokio's `now` is real time.
            running
                .runtime
                .block_on(async { clock::sleep(&SimClock::new(0), duration).await });
        }
    }

    /// The answers finished so far, in the order the node finished them.
    pub fn take_answers(&mut self) -> Vec<Answer> {
        std::mem::take(&mut *self.answers.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Calls the broker directly, off the network (for checkers): `None` if the node is
    /// down or does not answer within `timeout` of simulated time.
    pub fn call(&mut self, request: Request, timeout: Duration) -> Option<Response> {
        let running = self.running.as_ref()?;
        let broker = Arc::clone(&running.broker);
        running.runtime.block_on(async move {
            clock::timeout(&SimClock::new(0), timeout, broker.handle(request))
                .await
                .ok()
        })
    }

    /// Closes the node cleanly (the end of a run).
    pub fn close(&mut self) {
        if let Some(running) = self.running.take() {
            let broker = running.broker;
            running
                .runtime
                .block_on(async move { broker.close().await });
            running.runtime.shutdown_background();
        }
    }
}

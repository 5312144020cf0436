//! The node-wide bound on request and response bytes in flight
//! (`limits.in_flight_bytes_max`), and each connection's share of it
//! (`limits.in_flight_bytes_per_connection_max`).
//!
//! Owns: two byte semaphores (one for the node, one per connection) and the [`Reservation`]
//! a request stream holds from before its first byte is read into memory until its response
//! has been acknowledged by the client. Does not own: QUIC flow control (quinn's receive
//! and send windows, `limits.quic_*`), which bounds what quinn itself buffers per
//! connection.
//!
//! Invariants: every byte a reservation covers is held in both semaphores at once; bytes in
//! flight never exceed either limit. The only waits are for a request's *first* bytes, made
//! while the stream holds nothing in the node's semaphore; every later need (a frame that
//! keeps growing, a response larger than its request) is taken without waiting or refused.
//! Waiting while holding would deadlock: requests each holding part of the budget and each
//! waiting for more could never finish (the frame has no length prefix, so its size is only
//! known at the stream's end and cannot be reserved whole before reading).
//!
//! Why a per-connection share: the node semaphore alone bounds memory, but one client that
//! never reads its fetch answers (or sends frames slowly) would hold all of it and starve
//! every other client. With a share, such a client holds at most its share; the rest of the
//! node's budget keeps serving the others.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `limits.in_flight_bytes_max`: 256 MiB for the whole node.
pub const IN_FLIGHT_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;
/// Default of `limits.in_flight_bytes_per_connection_max`: 128 MiB, so that one client
/// leaves at least half of the node's budget to the others, and still fits two frames of
/// the default `limits.frame_bytes_max` (64 MiB).
pub const IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT: u64 = 128 * 1024 * 1024;
/// Largest value either limit accepts: tokio's semaphore holds at most `usize::MAX >> 3`
/// permits; 1 TiB is far beyond any edge box's memory and below that on 64-bit targets.
pub const IN_FLIGHT_BYTES_LIMIT: u64 = 1 << 40;

// A connection's share is taken from the node's budget, so it can be no larger.
const _: () = assert!(IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT <= IN_FLIGHT_BYTES_MAX_DEFAULT);
// A request of the largest default frame must fit in one connection's share, or the
// defaults would refuse frames that `frame_bytes_max` admits.
const _: () = assert!(
    ledge_protocol::wire::FRAME_BYTES_MAX_DEFAULT as u64
        <= IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT
);

/// The node-wide budget of bytes in flight; [`InFlightBudget::connection`] gives each
/// connection its share.
#[derive(Clone, Debug)]
pub struct InFlightBudget {
    node: Arc<Semaphore>,
    node_bytes_max: usize,
    connection_bytes_max: usize,
}

/// One connection's share of the node's budget.
#[derive(Clone, Debug)]
pub struct ConnectionBudget {
    node: Arc<Semaphore>,
    connection: Arc<Semaphore>,
    node_bytes_max: usize,
    connection_bytes_max: usize,
}

/// Bytes held in both the node's and the connection's semaphores, released on drop.
#[derive(Debug)]
pub struct Reservation {
    node: Option<OwnedSemaphorePermit>,
    connection: Option<OwnedSemaphorePermit>,
    budget: ConnectionBudget,
}

/// Why a reservation could not cover more bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// More bytes than the limit holds in total: this request or response can never be
    /// served under the configured limits.
    #[error(
        "{bytes} bytes in flight exceed {key} ({limit} bytes) on their own; raise the limit or send less"
    )]
    TooLarge {
        /// Bytes the reservation would have held.
        bytes: usize,
        /// The limit's config key.
        key: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The limit is reached by other requests and responses in flight; retry later.
    #[error("{key} ({limit} bytes) is reached by requests and responses in flight; retry later")]
    Exhausted {
        /// The limit's config key.
        key: &'static str,
        /// The limit.
        limit: usize,
    },
}

const NODE_KEY: &str = "limits.in_flight_bytes_max";
const CONNECTION_KEY: &str = "limits.in_flight_bytes_per_connection_max";

impl InFlightBudget {
    /// A budget of `node_bytes_max` for the node and `connection_bytes_max` per connection.
    /// Values above [`IN_FLIGHT_BYTES_LIMIT`] are clamped to it (the config refuses them).
    pub fn new(node_bytes_max: u64, connection_bytes_max: u64) -> Self {
        let clamp = |bytes: u64| {
            usize::try_from(bytes.min(IN_FLIGHT_BYTES_LIMIT)).unwrap_or(Semaphore::MAX_PERMITS)
        };
        let node_bytes_max = clamp(node_bytes_max).min(Semaphore::MAX_PERMITS);
        Self {
            node: Arc::new(Semaphore::new(node_bytes_max)),
            node_bytes_max,
            connection_bytes_max: clamp(connection_bytes_max).min(node_bytes_max),
        }
    }

    /// A fresh share for a new connection.
    pub fn connection(&self) -> ConnectionBudget {
        ConnectionBudget {
            node: Arc::clone(&self.node),
            connection: Arc::new(Semaphore::new(self.connection_bytes_max)),
            node_bytes_max: self.node_bytes_max,
            connection_bytes_max: self.connection_bytes_max,
        }
    }

    /// Bytes of the node's budget not held by any reservation.
    pub fn available_bytes(&self) -> usize {
        self.node.available_permits()
    }
}

impl ConnectionBudget {
    /// Waits until both the connection's share and the node's budget can cover `bytes`,
    /// and holds them. Refuses at once, without waiting, if `bytes` alone exceeds a limit.
    ///
    /// The connection's share is taken first: while a connection is over its share, its
    /// new requests queue on the connection's own semaphore and take nothing from the
    /// node, so other connections are not held up by it.
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation, BudgetError> {
        self.check_fits(bytes)?;
        let connection = Arc::clone(&self.connection)
            .acquire_many_owned(permits(bytes))
            .await
            .expect("the budget's semaphores are never closed");
        let node = Arc::clone(&self.node)
            .acquire_many_owned(permits(bytes))
            .await
            .expect("the budget's semaphores are never closed");
        Ok(Reservation {
            node: Some(node),
            connection: Some(connection),
            budget: self.clone(),
        })
    }

    /// Bytes of this connection's share not held by any of its reservations.
    pub fn available_bytes(&self) -> usize {
        self.connection.available_permits()
    }

    /// Most bytes one reservation may hold: the connection's share, and at most `u32::MAX`
    /// (tokio's `acquire_many` counts in `u32`; frames are `u32`-sized too).
    pub fn reservation_bytes_max(&self) -> usize {
        self.connection_bytes_max.min(u32::MAX as usize)
    }

    fn check_fits(&self, bytes: usize) -> Result<(), BudgetError> {
        let limit = self.reservation_bytes_max();
        if bytes > limit {
            let key = if self.connection_bytes_max < self.node_bytes_max {
                CONNECTION_KEY
            } else {
                NODE_KEY
            };
            return Err(BudgetError::TooLarge { bytes, key, limit });
        }
        Ok(())
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.node
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds `bytes` in total, growing without waiting (see the module doc for why) or
    /// shrinking. On a refusal the reservation is unchanged.
    pub fn resize(&mut self, bytes: usize) -> Result<(), BudgetError> {
        let held = self.bytes();
        if bytes <= held {
            let released = held - bytes;
            if released > 0 {
                drop(split(&mut self.node, released));
                drop(split(&mut self.connection, released));
            }
            return Ok(());
        }
        self.budget.check_fits(bytes)?;
        let more = permits(bytes - held);
        let connection = Arc::clone(&self.budget.connection)
            .try_acquire_many_owned(more)
            .map_err(|_| BudgetError::Exhausted {
                key: CONNECTION_KEY,
                limit: self.budget.connection_bytes_max,
            })?;
        let node = Arc::clone(&self.budget.node)
            .try_acquire_many_owned(more)
            .map_err(|_| BudgetError::Exhausted {
                key: NODE_KEY,
                limit: self.budget.node_bytes_max,
            })?;
        merge(&mut self.connection, connection);
        merge(&mut self.node, node);
        Ok(())
    }
}

/// `bytes` as semaphore permits (tokio counts one acquisition in `u32`). `check_fits` has
/// refused anything larger already.
fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn split(permit: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let held = permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
    if bytes >= held {
        return permit.take();
    }
    permit.as_mut().and_then(|permit| permit.split(bytes))
}

fn merge(permit: &mut Option<OwnedSemaphorePermit>, more: OwnedSemaphorePermit) {
    match permit {
        Some(permit) => permit.merge(more),
        None => *permit = Some(more),
    }
}

#[cfg(test)]
mod tests;

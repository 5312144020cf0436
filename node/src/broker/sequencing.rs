//! When a produce is sequenced: its batches are queued, in order, in their partitions'
//! writers, so that no append queued later can overtake them (and their idempotent
//! producers' sequences will be checked in that order), though they may not be written or
//! synced yet.
//!
//! A produce carries a [`SequencingHold`] down its path and drops it once nothing of it can
//! be overtaken any more: each partition's clone after its batches are queued (or refused,
//! or failed, before any was queued), and the whole hold at the latest when the produce is
//! answered. [`Sequenced::wait`] completes when every clone is dropped. The Kafka listener
//! starts a connection's next produce then, so several produces of one connection wait for
//! one group commit together while their answers still go out in request order
//! (`kafka/connection.rs`).
//!
//! A dropped hold is the signal, so an early return, an error or a cancelled produce can
//! never leave a connection waiting for a signal that is not sent; holding a clone too long
//! only delays the next request.

use tokio::sync::mpsc;

/// Held by a produce until it is sequenced; clone it for each partition. See the module
/// docs.
#[derive(Clone, Debug)]
pub struct SequencingHold {
    /// Nothing is ever sent: the receiver learns that every clone is gone.
    _held: mpsc::Sender<()>,
}

impl SequencingHold {
    /// A hold nobody waits for (a produce answered as a whole, as on QUIC).
    pub fn unobserved() -> Self {
        sequencing().0
    }
}

/// Completes when a produce's [`SequencingHold`] and all its clones are dropped.
#[derive(Debug)]
pub struct Sequenced {
    released: mpsc::Receiver<()>,
}

impl Sequenced {
    /// Waits until the produce is sequenced (every clone of its hold dropped). Cancel-safe:
    /// waiting again after a cancelled wait completes at the same moment.
    pub async fn wait(&mut self) {
        // `recv` gives `None` once every sender is gone; nothing is ever sent, so a `Some`
        // cannot occur, and looping on it keeps the invariant obvious.
        while self.released.recv().await.is_some() {}
    }
}

/// A new hold and the wait that completes when it (and every clone) is dropped.
pub fn sequencing() -> (SequencingHold, Sequenced) {
    // Capacity 1: nothing is ever sent; a bounded channel still, as every queue is.
    let (held, released) = mpsc::channel(1);
    (SequencingHold { _held: held }, Sequenced { released })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completes(wait: &mut Sequenced) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::select! {
                biased;
                () = wait.wait() => true,
                () = std::future::ready(()) => false,
            }
        })
    }

    #[test]
    fn sequenced_once_every_clone_is_dropped() {
        // Goal: the wait completes only after the hold and each of its per-partition
        // clones are dropped, whatever the order.
        let (hold, mut sequenced) = sequencing();
        let first = hold.clone();
        let second = hold.clone();
        assert!(!completes(&mut sequenced));
        drop(hold);
        assert!(!completes(&mut sequenced));
        drop(second);
        assert!(!completes(&mut sequenced));
        drop(first);
        assert!(completes(&mut sequenced));
        // And stays complete.
        assert!(completes(&mut sequenced));
    }
}

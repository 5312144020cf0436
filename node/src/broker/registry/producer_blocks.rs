//! Producer ids in a cluster (issue 13, KIP-730): blocks handed to this node by the active
//! controller and recorded in the metadata log before they are used, so an id is never given
//! twice: not by two nodes, not by one node across restarts (a block this node did not use
//! up before a restart is simply never used). A node alone keeps its local allocation
//! (`TopicRegistry::allocate_producer_id`, `metadata.json`'s reservation).
//!
//! - [`BlockState`]: the pure part. The block in use, the next one (fetched ahead once
//!   [`PRODUCER_ID_PREFETCH_PERCENT`] of the current one is used, so InitProducerId rarely
//!   waits for the controller), and whether a fetch ahead is running.
//! - [`ProducerIdBlocks`]: hands out ids from the state, fetching a block when none is left
//!   (one fetch at a time) and ahead in the background, through a [`ProducerIdBlockSource`]
//!   (the node's `AdminClient`, which forwards to the active controller).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::BoxFuture;

/// Ids per block asked from the controller: Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_COUNT: u32 = 1_000;

/// The share of the current block handed out after which the next block is fetched ahead.
pub const PRODUCER_ID_PREFETCH_PERCENT: u32 = 90;

/// Where blocks come from: the active controller, which records each in the metadata log
/// before answering.
pub trait ProducerIdBlockSource: Send + Sync + 'static {
    /// A block of `count` ids for this node; returns its first id, or why there is none.
    fn allocate_block(&self, count: u32) -> BoxFuture<'_, Result<i64, String>>;
}

impl ProducerIdBlockSource for crate::controller::admin::AdminClient {
    fn allocate_block(&self, count: u32) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            self.allocate_producer_ids(count)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// Why no producer id came from the controller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The controller gave no block (no controller known, refused, timed out).
    #[error("no producer id block from the controller: {0}")]
    Unavailable(String),
    /// The controller answered a block that runs past the id space.
    #[error("the controller answered a producer id block past the id space (first id {0})")]
    Invalid(i64),
}

/// Ids `next..end` of one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    next: i64,
    end: i64,
    /// Where the next block is fetched ahead: `next` reaching it.
    prefetch_at: i64,
}

/// The blocks of one node. Pure: the caller fetches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockState {
    current: Option<Block>,
    ahead: Option<Block>,
    /// A fetch ahead is running.
    prefetching: bool,
}

impl BlockState {
    /// The next id, if a block has one left (the block ahead becomes current when the
    /// current one is used up).
    pub fn take(&mut self) -> Option<i64> {
        if self.current.is_none_or(|block| block.next >= block.end) {
            self.current = self.ahead.take();
        }
        let block = self.current.as_mut()?;
        if block.next >= block.end {
            return None;
        }
        let id = block.next;
        block.next += 1;
        Some(id)
    }

    /// Whether an id is left without fetching.
    pub fn has_id(&self) -> bool {
        [self.current, self.ahead]
            .into_iter()
            .flatten()
            .any(|block| block.next < block.end)
    }

    /// Whether to start fetching the next block now (and marks the fetch as running): the
    /// current block is used past the prefetch point and none is ahead or being fetched.
    pub fn poll_prefetch(&mut self) -> bool {
        let due = self.ahead.is_none()
            && !self.prefetching
            && self
                .current
                .is_some_and(|block| block.next >= block.prefetch_at);
        if due {
            self.prefetching = true;
        }
        due
    }

    /// A fetch ahead ended (with or without a block).
    pub fn handle_prefetch_done(&mut self) {
        self.prefetching = false;
    }

    /// A block of `count` ids from `first` arrived: it becomes the current block if that is
    /// used up, else the one ahead (a second block while one is ahead is dropped: its ids
    /// are recorded as this node's and never used, which wastes them but repeats none).
    pub fn handle_block(&mut self, first: i64, count: u32) -> Result<(), BlockError> {
        let end = first
            .checked_add(i64::from(count))
            .filter(|_| first >= 0)
            .ok_or(BlockError::Invalid(first))?;
        let used = i64::from(count) * i64::from(PRODUCER_ID_PREFETCH_PERCENT) / 100;
        let block = Block {
            next: first,
            end,
            prefetch_at: first + used,
        };
        if self
            .current
            .is_none_or(|current| current.next >= current.end)
        {
            self.current = Some(block);
        } else if self.ahead.is_none() {
            self.ahead = Some(block);
        }
        Ok(())
    }
}

/// Hands out producer ids from controller blocks. See the module documentation.
pub struct ProducerIdBlocks {
    state: Mutex<BlockState>,
    /// Held while a block is fetched because none is left: waiting InitProducerIds take
    /// theirs from it rather than each asking the controller.
    fetching: tokio::sync::Mutex<()>,
    count: u32,
}

impl Default for ProducerIdBlocks {
    fn default() -> Self {
        Self::new(PRODUCER_ID_BLOCK_COUNT)
    }
}

impl ProducerIdBlocks {
    /// Blocks of `count` ids.
    pub fn new(count: u32) -> Self {
        Self {
            state: Mutex::new(BlockState::default()),
            fetching: tokio::sync::Mutex::new(()),
            count: count.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BlockState> {
        // Never held across an await; poisoning means a panic already reported.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next producer id: from the current block, else from a block fetched now from
    /// `source`. Fetches the next block ahead in the background once the current one is
    /// mostly used.
    pub async fn allocate(
        self: &Arc<Self>,
        source: Arc<dyn ProducerIdBlockSource>,
    ) -> Result<i64, BlockError> {
        loop {
            {
                let mut state = self.lock();
                if let Some(id) = state.take() {
                    if state.poll_prefetch() {
                        let blocks = Arc::clone(self);
                        let source = Arc::clone(&source);
                        tokio::spawn(async move { blocks.prefetch(&*source).await });
                    }
                    return Ok(id);
                }
            }
            let _fetching = self.fetching.lock().await;
            if self.lock().has_id() {
                // Another request fetched one while this one waited.
                continue;
            }
            let first = source
                .allocate_block(self.count)
                .await
                .map_err(BlockError::Unavailable)?;
            self.lock().handle_block(first, self.count)?;
        }
    }

    async fn prefetch(&self, source: &dyn ProducerIdBlockSource) {
        let outcome = source.allocate_block(self.count).await;
        let mut state = self.lock();
        state.handle_prefetch_done();
        match outcome.map(|first| state.handle_block(first, self.count)) {
            Ok(Ok(())) => {}
            // The next allocation that crosses the prefetch point tries again; one that
            // finds no id left fetches in line.
            Ok(Err(error)) => tracing::warn!(%error, "producer id block fetched ahead refused"),
            Err(error) => tracing::info!(%error, "producer id block not fetched ahead"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

    use super::*;

    #[test]
    fn ids_come_from_the_current_block_then_the_one_fetched_ahead() {
        let mut state = BlockState::default();
        assert_eq!(state.take(), None);
        assert!(!state.poll_prefetch(), "nothing to fetch ahead of");
        state.handle_block(1_000, 10).unwrap();
        for expected in 1_000..1_009 {
            assert_eq!(state.take(), Some(expected));
            // 90% of 10: the 9th id taken makes the fetch ahead due, once.
            assert_eq!(state.poll_prefetch(), expected == 1_008, "after {expected}");
        }
        assert!(!state.poll_prefetch(), "already fetching");
        state.handle_block(5_000, 10).unwrap();
        state.handle_prefetch_done();
        assert_eq!(state.take(), Some(1_009));
        assert_eq!(state.take(), Some(5_000));
        // A block past the id space is refused, not wrapped.
        assert_eq!(
            state.handle_block(i64::MAX - 3, 10),
            Err(BlockError::Invalid(i64::MAX - 3))
        );
        assert_eq!(state.handle_block(-5, 10), Err(BlockError::Invalid(-5)));
    }

    /// A controller stand-in: consecutive blocks, as the metadata log records them.
    struct Counter {
        next: AtomicI64,
        asked: AtomicU32,
        fail: bool,
    }

    impl ProducerIdBlockSource for Counter {
        fn allocate_block(&self, count: u32) -> BoxFuture<'_, Result<i64, String>> {
            Box::pin(async move {
                self.asked.fetch_add(1, Ordering::SeqCst);
                if self.fail {
                    return Err("no controller known".to_owned());
                }
                Ok(self.next.fetch_add(i64::from(count), Ordering::SeqCst))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_allocations_get_distinct_ids_and_blocks_are_fetched_ahead() {
        let source = Arc::new(Counter {
            next: AtomicI64::new(1_000),
            asked: AtomicU32::new(0),
            fail: false,
        });
        let blocks = Arc::new(ProducerIdBlocks::new(10));
        let tasks: Vec<_> = (0..45)
            .map(|_| {
                let blocks = Arc::clone(&blocks);
                let source = Arc::clone(&source) as Arc<dyn ProducerIdBlockSource>;
                tokio::spawn(async move { blocks.allocate(source).await })
            })
            .collect();
        let mut ids = BTreeSet::new();
        for task in tasks {
            assert!(ids.insert(task.await.unwrap().unwrap()), "an id twice");
        }
        assert_eq!(ids.len(), 45);
        assert!(ids.iter().all(|id| (1_000..1_000 + 10 * 6).contains(id)));
        // 45 ids from blocks of 10: at least 5 blocks, and never one per id.
        let asked = source.asked.load(Ordering::SeqCst);
        assert!((5..=7).contains(&asked), "{asked} blocks asked for");
    }

    #[tokio::test(start_paused = true)]
    async fn no_controller_no_id() {
        let source = Arc::new(Counter {
            next: AtomicI64::new(1_000),
            asked: AtomicU32::new(0),
            fail: true,
        });
        let blocks = Arc::new(ProducerIdBlocks::new(10));
        assert_eq!(
            blocks.allocate(source).await,
            Err(BlockError::Unavailable("no controller known".to_owned()))
        );
    }
}

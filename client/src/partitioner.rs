//! Choosing a partition for a record: Kafka's default rules, and a trait for your own.
//!
//! [`DefaultPartitioner`] does what Kafka's Java producer does, so that a key lands on the same
//! partition whichever client wrote it: keyed records go to `murmur2(key) & 0x7fffffff %
//! partitions` (Kafka's `Utils.murmur2`, seed `0x9747b28c`); records without a key stick to one
//! partition until a batch for it is complete, then move to another (KIP-480), which fills
//! batches faster than round robin.

use std::collections::HashMap;

/// Picks the partition of each record whose [`crate::ProducerRecord::partition`] is `None`.
///
/// Called with the producer's internal lock held, once per record: keep it cheap and never
/// block. A result `>= partition_count` fails the record with
/// [`crate::ProduceError::InvalidPartition`].
pub trait Partitioner: Send {
    /// The partition for a record of `topic` with `key`, among `partition_count` (at least 1).
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partition_count: u32) -> u32;

    /// A batch for `partition` of `topic` was closed (full, or sent after `linger`). Sticky
    /// partitioners move on here; the default does nothing.
    fn on_batch_complete(&mut self, topic: &str, partition: u32, partition_count: u32) {
        let _ = (topic, partition, partition_count);
    }
}

/// Kafka's default partitioner: murmur2 for keys, sticky for records without one.
#[derive(Debug, Clone)]
pub struct DefaultPartitioner {
    sticky: HashMap<String, u32>,
    random: SplitMix64,
}

impl DefaultPartitioner {
    /// A partitioner whose sticky choices come from `seed` (the same seed, the same choices).
    pub fn with_seed(seed: u64) -> Self {
        Self {
            sticky: HashMap::new(),
            random: SplitMix64(seed),
        }
    }

    /// A partitioner seeded from the clock.
    pub fn new() -> Self {
        Self::with_seed(crate::clock::seed())
    }

    fn pick_other(&mut self, partition_count: u32, avoid: Option<u32>) -> u32 {
        if partition_count <= 1 {
            return 0;
        }
        match avoid {
            // One of the other `count - 1` partitions, uniformly.
            Some(avoid) if avoid < partition_count => {
                let step = 1 + self.random.below(partition_count - 1);
                (avoid + step) % partition_count
            }
            _ => self.random.below(partition_count),
        }
    }
}

impl Default for DefaultPartitioner {
    fn default() -> Self {
        Self::new()
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partition_count: u32) -> u32 {
        if let Some(key) = key {
            return partition_for_key(key, partition_count);
        }
        match self.sticky.get(topic) {
            // A topic that grew or shrank gets a fresh choice.
            Some(&partition) if partition < partition_count => partition,
            _ => {
                let partition = self.pick_other(partition_count, None);
                self.sticky.insert(topic.to_string(), partition);
                partition
            }
        }
    }

    fn on_batch_complete(&mut self, topic: &str, partition: u32, partition_count: u32) {
        let Some(&current) = self.sticky.get(topic) else {
            return;
        };
        if current == partition {
            let next = self.pick_other(partition_count, Some(partition));
            if let Some(sticky) = self.sticky.get_mut(topic) {
                *sticky = next;
            }
        }
    }
}

// The one murmur2 of Ledge, shared with partitioner plug-ins through the guest SDK.
pub use ledge_protocol::partitioner::{murmur2, partition_for_key};

/// A small, fast, seedable generator (Steele et al., "Fast splittable pseudorandom number
/// generators"): good enough to spread sticky partitions, and free of global state.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` at least 1); the modulo bias is below 2^-32.
    pub(crate) fn below(&mut self, bound: u32) -> u32 {
        (self.next_u64() % u64::from(bound.max(1))) as u32
    }
}

#[cfg(test)]
mod tests;

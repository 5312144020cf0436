//! Idempotent-producer state of one partition (pure): which sequences each producer wrote.
//!
//! For every producer id it keeps the epoch and the last [`RETAINED_BATCHES`] batches'
//! sequence ranges with their offsets, as Kafka's `ProducerStateManager` does. A retried
//! batch (same epoch, same first and last sequence as a retained one) is a duplicate: it is
//! answered with the original offsets and not written again. A batch must otherwise start
//! at the last sequence + 1, or at 0 for a new epoch.
//!
//! The state is rebuilt at open from a snapshot taken at each segment roll
//! (`<base>.snapshot`, the state as of the start of segment `<base>`) plus the batches of
//! the active segment, so duplicates are caught across restarts.

use std::collections::{BTreeMap, VecDeque};

use ledge_protocol::BatchHeader;

/// Batches remembered per producer: Kafka's limit on in-flight requests per connection for
/// idempotent producers, so any retry of an in-flight batch is recognised.
pub const RETAINED_BATCHES: usize = 5;

/// Default bound on producers remembered per partition (least recently active go first).
pub const PRODUCERS_MAX_DEFAULT: usize = 10_000;

/// Sequences and offsets of one written batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSequence {
    /// The batch's base sequence.
    pub first_sequence: i32,
    /// Its last sequence (base + last offset delta, wrapping).
    pub last_sequence: i32,
    /// Offset the log gave its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// What one producer has written to this partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer's current epoch.
    pub epoch: i16,
    /// Its last batches, oldest first.
    pub batches: VecDeque<BatchSequence>,
}

/// The verdict on an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Accept,
    /// Already written: answer with these offsets and do not write.
    Duplicate {
        /// Original base offset.
        base_offset: i64,
        /// Original last offset.
        last_offset: i64,
    },
    /// A gap or reordering: refuse.
    OutOfOrder {
        /// The sequence the batch should start at.
        expected: i32,
        /// The sequence it starts at.
        received: i32,
    },
    /// A producer id this partition does not know, starting anywhere but sequence 0: its
    /// earlier batches are unknown (never written, retained away, or evicted), so the
    /// producer must start over with a new id (Kafka's UNKNOWN_PRODUCER_ID).
    UnknownProducer {
        /// The sequence it starts at.
        received: i32,
    },
    /// An older epoch of this producer id: a newer instance has taken over; refuse.
    StaleEpoch {
        /// The current epoch.
        current: i16,
        /// The batch's epoch.
        received: i16,
    },
}

/// Producer states of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    header.base_sequence.wrapping_add(header.last_offset_delta) & i32::MAX
}

impl ProducerStates {
    /// Number of producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The largest producer id remembered, if any.
    pub fn producer_id_max(&self) -> Option<i64> {
        self.producers.keys().next_back().copied()
    }

    /// The entry of one producer.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer remembered, by id.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// Judges a batch against what its producer wrote before.
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if header.producer_id < 0 {
            return SequenceCheck::Accept;
        }
        // An unknown producer must start at 0. Kafka accepts any sequence here, relying on
        // TCP's in-order delivery; requests on separate QUIC streams can arrive reordered, and
        // accepting a later batch first would lock the producer's batch 0 out for good.
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return if header.base_sequence == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::UnknownProducer {
                    received: header.base_sequence,
                }
            };
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch {
                current: entry.epoch,
                received: header.producer_epoch,
            };
        }
        if header.producer_epoch > entry.epoch {
            return if header.base_sequence == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    received: header.base_sequence,
                }
            };
        }
        let last = last_sequence(header);
        if let Some(original) = entry.batches.iter().find(|batch| {
            batch.first_sequence == header.base_sequence && batch.last_sequence == last
        }) {
            return SequenceCheck::Duplicate {
                base_offset: original.base_offset,
                last_offset: original.last_offset,
            };
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |batch| batch.last_sequence.wrapping_add(1) & i32::MAX);
        if header.base_sequence == expected {
            SequenceCheck::Accept
        } else {
            SequenceCheck::OutOfOrder {
                expected,
                received: header.base_sequence,
            }
        }
    }

    /// Records a written batch; returns the producer's previous entry so a failed write can
    /// be undone with [`ProducerStates::restore`].
    pub fn record(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        producers_max: usize,
    ) -> Option<ProducerEntry> {
        if header.producer_id < 0 {
            return None;
        }
        let previous = self.producers.get(&header.producer_id).cloned();
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchSequence {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
        });
        while entry.batches.len() > RETAINED_BATCHES {
            entry.batches.pop_front();
        }
        self.evict_beyond(producers_max, header.producer_id);
        previous
    }

    /// Undoes a [`ProducerStates::record`].
    pub fn restore(&mut self, producer_id: i64, previous: Option<ProducerEntry>) {
        match previous {
            Some(entry) => {
                self.producers.insert(producer_id, entry);
            }
            None => {
                self.producers.remove(&producer_id);
            }
        }
    }

    fn evict_beyond(&mut self, producers_max: usize, keep: i64) {
        while self.producers.len() > producers_max.max(1) {
            let oldest = self
                .producers
                .iter()
                .filter(|(id, _)| **id != keep)
                .min_by_key(|(_, entry)| {
                    entry
                        .batches
                        .back()
                        .map_or(i64::MIN, |batch| batch.last_offset)
                })
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.producers.remove(&id);
                }
                None => break,
            }
        }
    }

    /// The snapshot file contents (see docs/FORMAT.md).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (producer_id, entry) in &self.producers {
            body.extend_from_slice(&producer_id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.push(
                u8::try_from(entry.batches.len()).expect("at most RETAINED_BATCHES per producer"),
            );
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.base_offset.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.to_be_bytes());
            }
        }
        let mut file = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
        file.extend_from_slice(&SNAPSHOT_MAGIC);
        file.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_be_bytes());
        file.extend_from_slice(
            &u32::try_from(self.producers.len())
                .expect("producers are bounded")
                .to_be_bytes(),
        );
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        file.extend_from_slice(&[0u8; 4]);
        file.extend_from_slice(&body);
        file
    }

    /// Loads a snapshot; `None` if it is damaged or not ours (the caller rebuilds).
    pub fn decode_snapshot(file: &[u8]) -> Option<Self> {
        let header = file.get(..SNAPSHOT_HEADER_BYTES)?;
        if header.get(..8)? != SNAPSHOT_MAGIC || read_u32(header, 8)? != SNAPSHOT_FORMAT_VERSION {
            return None;
        }
        let count = read_u32(header, 12)?;
        let body = file.get(SNAPSHOT_HEADER_BYTES..)?;
        if crc32c::crc32c(body) != read_u32(header, 16)? {
            return None;
        }
        let mut producers = BTreeMap::new();
        let mut at = 0usize;
        for _ in 0..count {
            let producer_id = i64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?);
            let epoch = i16::from_be_bytes(body.get(at + 8..at + 10)?.try_into().ok()?);
            let batch_count = usize::from(*body.get(at + 10)?);
            at += 11;
            if batch_count > RETAINED_BATCHES {
                return None;
            }
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                let first_sequence = i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
                let last_sequence = i32::from_be_bytes(body.get(at + 4..at + 8)?.try_into().ok()?);
                let base_offset = i64::from_be_bytes(body.get(at + 8..at + 16)?.try_into().ok()?);
                let last_offset = i64::from_be_bytes(body.get(at + 16..at + 24)?.try_into().ok()?);
                batches.push_back(BatchSequence {
                    first_sequence,
                    last_sequence,
                    base_offset,
                    last_offset,
                });
                at += 24;
            }
            producers.insert(producer_id, ProducerEntry { epoch, batches });
        }
        (at == body.len()).then_some(Self { producers })
    }
}

const SNAPSHOT_MAGIC: [u8; 8] = *b"LEDGEPSN";
const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 24;

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut states = ProducerStates::default();
        assert_eq!(states.check(&header(-1, -1, -1, 3)), SequenceCheck::Accept);
        assert_eq!(states.check(&header(7, 0, 0, 3)), SequenceCheck::Accept);
        states.record(&header(7, 0, 0, 3), 100, 10);
        // A retry of the same batch is a duplicate with the original offsets.
        assert_eq!(
            states.check(&header(7, 0, 0, 3)),
            SequenceCheck::Duplicate {
                base_offset: 100,
                last_offset: 102
            }
        );
        assert_eq!(states.check(&header(7, 0, 3, 2)), SequenceCheck::Accept);
        assert_eq!(
            states.check(&header(7, 0, 4, 2)),
            SequenceCheck::OutOfOrder {
                expected: 3,
                received: 4
            }
        );
        states.record(&header(7, 0, 3, 2), 103, 10);
        assert_eq!(
            states.check(&header(7, 0, 3, 2)),
            SequenceCheck::Duplicate {
                base_offset: 103,
                last_offset: 104
            }
        );
        // Epochs: older refused, newer must restart at 0.
        assert_eq!(
            states.check(&header(7, -1, 5, 1)),
            SequenceCheck::StaleEpoch {
                current: 0,
                received: -1
            }
        );
        assert_eq!(
            states.check(&header(7, 1, 5, 1)),
            SequenceCheck::OutOfOrder {
                expected: 0,
                received: 5
            }
        );
        assert_eq!(states.check(&header(7, 1, 0, 1)), SequenceCheck::Accept);
        // Only the last RETAINED_BATCHES are remembered.
        for (sequence, offset) in (5..).zip(0..10) {
            states.record(&header(7, 0, sequence, 1), 200 + offset, 10);
        }
        assert_eq!(states.entry(7).unwrap().batches.len(), RETAINED_BATCHES);
        // Sequences wrap at i32::MAX to 0.
        // An unknown producer must start at sequence 0.
        assert_eq!(
            ProducerStates::default().check(&header(8, 0, 5, 1)),
            SequenceCheck::UnknownProducer { received: 5 }
        );
        let mut wrapping = ProducerStates::default();
        wrapping.record(&header(9, 0, i32::MAX - 1, 2), 0, 10);
        assert_eq!(wrapping.check(&header(9, 0, 0, 1)), SequenceCheck::Accept);
    }

    #[test]
    fn restore_undoes_a_record_and_eviction_bounds_memory() {
        let mut states = ProducerStates::default();
        let previous = states.record(&header(1, 0, 0, 1), 0, 10);
        states.restore(1, previous);
        assert!(states.is_empty());
        for producer in 0..20 {
            states.record(&header(producer, 0, 0, 1), producer * 10, 5);
        }
        assert_eq!(states.len(), 5);
        assert!(states.entry(19).is_some() && states.entry(0).is_none());
    }

    #[test]
    fn snapshot_round_trips_and_damage_is_detected() {
        let mut states = ProducerStates::default();
        for producer in 0..4 {
            for batch in 0..7 {
                states.record(
                    &header(producer, 2, batch * 3, 3),
                    producer * 1000 + i64::from(batch) * 3,
                    100,
                );
            }
        }
        let file = states.encode_snapshot();
        assert_eq!(ProducerStates::decode_snapshot(&file), Some(states));
        let mut damaged = file.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(ProducerStates::decode_snapshot(&damaged), None);
        assert_eq!(ProducerStates::decode_snapshot(&file[..10]), None);
        assert_eq!(
            ProducerStates::decode_snapshot(b"not a snapshot at all, not even close"),
            None
        );
    }
}

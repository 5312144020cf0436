//! Reading a partition's segments record by record for `ledge-repair dump` (Kafka's
//! `kafka-dump-log`): pure, over the bytes of one segment file at a time; the binary reads
//! the files and prints.
//!
//! Each batch is checked as recovery checks it ([`recovery::scan`]: length, magic, CRC-32C,
//! the base offset continuing the one before, epochs never going back), then its records are
//! decoded. The first batch that fails is reported as damage with the offset it should have
//! started at and its file position, and nothing after it is read: bytes past damage are
//! suspect, as they are to the node (its verified read stops there too). Nothing here writes.

use bytes::Bytes;
use ledge_protocol::{DecodeLimits, decode_batch};

use super::recovery::{self, ScanStop};
use super::segment::{SEGMENT_FLAG_COMPACTED, SEGMENT_HEADER_BYTES, check_segment_header};

/// One record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedRecord {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, ms since the epoch (create or log-append time, as the batch says).
    pub timestamp_ms: i64,
    /// Its key, if any.
    pub key: Option<Bytes>,
    /// Its value (`None` is a tombstone).
    pub value: Option<Bytes>,
}

/// One stored batch and its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedBatch {
    /// File position of the batch in its segment.
    pub position: u64,
    /// Its first offset.
    pub base_offset: i64,
    /// Its last offset.
    pub last_offset: i64,
    /// The leader epoch it was written under.
    pub leader_epoch: i32,
    /// The idempotent producer's id (-1 for none).
    pub producer_id: i64,
    /// The producer's epoch (-1 for none).
    pub producer_epoch: i16,
    /// The sequence of its first record (-1 for none).
    pub base_sequence: i32,
    /// Whether it is a transaction marker or other control batch.
    pub control: bool,
    /// Its records.
    pub records: Vec<DumpedRecord>,
}

/// The first damaged batch met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpDamage {
    /// The offset the damaged batch should start at: everything from it on is suspect.
    pub offset: i64,
    /// File position of the damaged batch.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

/// What one segment file holds, up to its first damaged batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentDump {
    /// The good batches, in file order.
    pub batches: Vec<DumpedBatch>,
    /// The offset after the last good batch.
    pub next_offset: i64,
    /// The first damaged batch, if the segment has one; nothing after it was read.
    pub damage: Option<DumpDamage>,
}

/// Reads the batches of one segment file (`bytes`, header included), whose batches must
/// start at `next_offset` (the segment's base, or the end of the segment before).
pub fn dump_segment(bytes: &[u8], next_offset: i64) -> SegmentDump {
    let flags = match check_segment_header(bytes) {
        Ok(flags) => flags,
        Err(error) => {
            return SegmentDump {
                batches: Vec::new(),
                next_offset,
                damage: Some(DumpDamage {
                    offset: next_offset,
                    position: 0,
                    reason: error.to_string(),
                }),
            };
        }
    };
    let body = bytes
        .get(SEGMENT_HEADER_BYTES as usize..)
        .unwrap_or_default();
    let mut found = Vec::new();
    let result = recovery::scan(
        body,
        SEGMENT_HEADER_BYTES,
        next_offset,
        flags & SEGMENT_FLAG_COMPACTED != 0,
        &mut |header, position, total| {
            found.push((*header, position, total));
            Ok(())
        },
    );
    let mut dump = SegmentDump {
        batches: Vec::with_capacity(found.len()),
        next_offset: result.next_offset,
        damage: None,
    };
    let limits = DecodeLimits::default();
    for (header, position, total) in found {
        let start = (position - SEGMENT_HEADER_BYTES) as usize;
        let batch = Bytes::copy_from_slice(
            body.get(start..start + total as usize)
                .expect("scan reports batches inside the slice it scanned"),
        );
        match decode_batch(&batch, &limits) {
            Ok(decoded) => dump.batches.push(DumpedBatch {
                position,
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                leader_epoch: header.partition_leader_epoch,
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
                control: header.is_control(),
                records: decoded
                    .records
                    .into_iter()
                    .map(|record| DumpedRecord {
                        offset: record.offset,
                        timestamp_ms: record.timestamp,
                        key: record.key,
                        value: record.value,
                    })
                    .collect(),
            }),
            // The CRC held but the records inside do not decode: damaged before the CRC
            // was computed, or a codec this build reads differently. Stop as at damage.
            Err(error) => {
                dump.next_offset = header.base_offset;
                dump.damage = Some(DumpDamage {
                    offset: header.base_offset,
                    position,
                    reason: format!("records do not decode: {error}"),
                });
                return dump;
            }
        }
    }
    dump.damage = match result.stop {
        ScanStop::End => None,
        ScanStop::Incomplete {
            position,
            total_bytes,
        } => Some(DumpDamage {
            offset: result.next_offset,
            position,
            reason: match total_bytes {
                Some(total) => format!(
                    "incomplete batch: {total} bytes declared, the file ends first (a torn write, cut at the next start if it was never synced)"
                ),
                None => "incomplete batch: the file ends inside its length prefix (a torn write, cut at the next start if it was never synced)".to_string(),
            },
        }),
        ScanStop::Invalid { position, reason } => Some(DumpDamage {
            offset: result.next_offset,
            position,
            reason,
        }),
    };
    dump
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::segment::segment_header;
    use ledge_protocol::{EncodeOptions, Record, encode_batch};

    fn batch(base_offset: i64, values: &[&str], epoch: i32) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .map(|value| Record {
                timestamp: 1_000,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::copy_from_slice(value.as_bytes())),
                headers: Vec::new(),
            })
            .collect();
        encode_batch(
            &records,
            &EncodeOptions {
                base_offset,
                partition_leader_epoch: epoch,
                producer_id: 7,
                producer_epoch: 1,
                base_sequence: i32::try_from(base_offset).unwrap(),
                ..EncodeOptions::default()
            },
        )
        .unwrap()
    }

    fn segment(batches: &[Bytes]) -> Vec<u8> {
        let mut bytes = segment_header().to_vec();
        for batch in batches {
            bytes.extend_from_slice(batch);
        }
        bytes
    }

    // Goal: every batch and record of a clean segment is read with its offsets, epoch,
    // producer fields, key and value, and the next offset follows the last batch.
    #[test]
    fn a_clean_segment_dumps_every_record() {
        let bytes = segment(&[batch(10, &["a", "b"], 0), batch(12, &["c"], 3)]);
        let dump = dump_segment(&bytes, 10);
        assert_eq!(dump.damage, None);
        assert_eq!(dump.next_offset, 13);
        assert_eq!(dump.batches.len(), 2);
        let second = &dump.batches[1];
        assert_eq!(
            (second.base_offset, second.last_offset, second.leader_epoch),
            (12, 12, 3)
        );
        assert_eq!(
            (
                second.producer_id,
                second.producer_epoch,
                second.base_sequence
            ),
            (7, 1, 12)
        );
        let values: Vec<(i64, Option<Bytes>)> = dump
            .batches
            .iter()
            .flat_map(|batch| batch.records.iter())
            .map(|record| (record.offset, record.value.clone()))
            .collect();
        assert_eq!(
            values,
            vec![
                (10, Some(Bytes::from_static(b"a"))),
                (11, Some(Bytes::from_static(b"b"))),
                (12, Some(Bytes::from_static(b"c"))),
            ]
        );
    }

    // Goal: a flipped bit in the second batch stops the dump there, naming the offset that
    // batch should start and its file position; the first batch is still dumped and
    // nothing after the damage is (the third batch is intact but not read).
    #[test]
    fn a_bit_flip_stops_at_the_damaged_batch_with_its_offset() {
        let first = batch(0, &["a", "b"], 0);
        let second = batch(2, &["c"], 0);
        let mut bytes = segment(&[first.clone(), second, batch(3, &["d"], 0)]);
        let second_position = SEGMENT_HEADER_BYTES as usize + first.len();
        // A byte of the second batch's value, covered by its CRC.
        let last_of_second = bytes.len() - batch(3, &["d"], 0).len() - 1;
        bytes[last_of_second] ^= 0x10;
        let dump = dump_segment(&bytes, 0);
        assert_eq!(dump.batches.len(), 1);
        assert_eq!(dump.next_offset, 2);
        let damage = dump.damage.unwrap();
        assert_eq!(damage.offset, 2);
        assert_eq!(damage.position, second_position as u64);
        assert!(damage.reason.to_lowercase().contains("crc"), "{damage:?}");
    }

    // Goal: a segment cut inside a batch (a torn write) and a file that is not a segment
    // are each named as damage at the offset expected there, never a panic.
    #[test]
    fn a_torn_tail_and_a_foreign_file_are_damage() {
        let full = segment(&[batch(5, &["a"], 0), batch(6, &["b"], 0)]);
        let torn = &full[..full.len() - 3];
        let dump = dump_segment(torn, 5);
        assert_eq!(dump.batches.len(), 1);
        let damage = dump.damage.unwrap();
        assert_eq!(damage.offset, 6);
        assert!(damage.reason.contains("incomplete batch"), "{damage:?}");

        let dump = dump_segment(b"not a segment at all, just text", 0);
        assert!(dump.batches.is_empty());
        assert_eq!(dump.damage.unwrap().offset, 0);
        assert_eq!(dump_segment(&[], 9).damage.unwrap().offset, 9);
    }
}

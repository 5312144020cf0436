//! Sparse offset and time indexes of one segment (pure: entries in memory, files as bytes).
//!
//! The offset index maps a relative offset to the file position of the batch that starts
//! there, one entry per `index_interval_bytes` of log; a lookup gives the position to start
//! scanning from. The time index keeps the running maximum timestamp with the batch that
//! raised it, so a lookup for `t` gives a batch before which no timestamp reaches `t`.
//!
//! Both live in memory for every segment; a sealed segment's are also written to
//! `.index`/`.timeindex` files with a CRC, and rebuilt from the segment if a file is
//! missing or fails its checks (an index is derived data, never a source of truth).
//!
//! The index also counts the segment's records (the sum of its batches' `record_count`), so
//! a partition's record count (shown by `topic describe`) is known without reading the log
//! even where compaction or a produce filter left offsets without records. The count is
//! stored at the start of the offset index file's entries (format version 2); a version 1
//! file has no count and is rebuilt from the segment once.

/// Bytes of the header of an index file.
pub const INDEX_HEADER_BYTES: usize = 24;
const OFFSET_INDEX_MAGIC: [u8; 8] = *b"LEDGEIDX";
const TIME_INDEX_MAGIC: [u8; 8] = *b"LEDGETIX";
/// Version 2 begins the entries with the segment's record count (8 bytes).
const OFFSET_INDEX_FORMAT_VERSION: u32 = 2;
const TIME_INDEX_FORMAT_VERSION: u32 = 1;
/// Bytes of the record count that begins a version 2 offset index's entries.
const RECORD_COUNT_BYTES: usize = 8;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

/// One offset index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset minus segment base offset.
    pub relative_offset: u32,
    /// File position of that batch.
    pub position: u32,
}

/// One time index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp seen in the segment up to and including this batch.
    pub timestamp_ms: i64,
    /// Base offset of the batch that raised it, relative to the segment base.
    pub relative_offset: u32,
}

/// The in-memory indexes of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentIndex {
    base_offset: i64,
    interval_bytes: u32,
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    max_timestamp_ms: Option<(i64, u32)>,
    /// Records in the segment's batches.
    record_count: u64,
}

/// Why an index file was refused (the caller rebuilds the index from the segment).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexFileError {
    /// Shorter than its header or entries.
    #[error("index file truncated")]
    Truncated,
    /// Wrong magic for its kind.
    #[error("not a Ledge index file")]
    Foreign,
    /// Written by a newer Ledge.
    #[error("index format version {0} is newer than this build supports")]
    NewerVersion(u32),
    /// Written by an older Ledge, without something this build keeps (the record count).
    #[error("index format version {0} predates the segment record count")]
    OlderVersion(u32),
    /// The record count is more than the segment has offsets.
    #[error("index record count {count} exceeds the segment's {span} offsets")]
    BadRecordCount {
        /// The stored count.
        count: u64,
        /// Offsets the segment spans.
        span: i64,
    },
    /// The entries do not match their checksum.
    #[error("index checksum mismatch")]
    Checksum,
    /// Entries out of order or pointing outside the segment.
    #[error("index entry {0} is out of order or out of range")]
    BadEntry(usize),
}

/// Why a batch could not be recorded in a segment's index.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteBatchError {
    /// The batch starts before the segment or more than `u32::MAX` offsets after its base.
    #[error(
        "batch at offset {base_offset} lies outside the 32-bit offset range of the segment at {segment_base_offset}"
    )]
    OffsetOutOfRange {
        /// The segment's base offset.
        segment_base_offset: i64,
        /// The batch's base offset.
        base_offset: i64,
    },
    /// The batch starts past the 4 GiB that index positions can address.
    #[error("batch at byte {position} lies past the 32-bit positions of the segment index")]
    PositionOutOfRange {
        /// The batch's file position.
        position: u64,
    },
    /// The batch does not come after the last one recorded.
    #[error("batch at offset {base_offset}, byte {position} does not follow the batches before it")]
    NotAscending {
        /// The batch's base offset.
        base_offset: i64,
        /// The batch's file position.
        position: u64,
    },
}

impl SegmentIndex {
    /// Empty indexes for a segment starting at `base_offset`.
    pub fn new(base_offset: i64, interval_bytes: u32) -> Self {
        Self {
            base_offset,
            interval_bytes,
            offsets: Vec::new(),
            times: Vec::new(),
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            max_timestamp_ms: None,
            record_count: 0,
        }
    }

    /// Records in the segment's batches, as counted by [`Self::note_records`].
    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// Counts `records` more records in the segment (those of a batch just noted).
    pub fn note_records(&mut self, records: u64) {
        self.record_count = self.record_count.saturating_add(records);
    }

    /// The segment's first offset.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The largest batch max-timestamp in the segment, if any batch carries one.
    pub fn max_timestamp_ms(&self) -> Option<i64> {
        self.max_timestamp_ms.map(|(timestamp, _)| timestamp)
    }

    /// Records a batch appended at `position`. The first batch and then one batch per
    /// `interval_bytes` get an offset entry; the time index gets an entry when the running
    /// maximum timestamp rises and an interval has passed since the last one.
    ///
    /// Entries hold 32-bit relative offsets and positions, and must grow. The writer rolls
    /// segments so that every batch fits (`segment::roll_reason`), but the offsets and
    /// positions come from batch headers a client or a file supplied, so a batch that does
    /// not fit is an error for the caller to act on (the writer fences, recovery stops
    /// there), never a panic. Nothing is recorded for a refused batch.
    pub fn note_batch(
        &mut self,
        position: u64,
        base_offset: i64,
        max_timestamp_ms: i64,
        batch_bytes: u64,
    ) -> Result<(), NoteBatchError> {
        let relative = base_offset
            .checked_sub(self.base_offset)
            .and_then(|relative| u32::try_from(relative).ok())
            .ok_or(NoteBatchError::OffsetOutOfRange {
                segment_base_offset: self.base_offset,
                base_offset,
            })?;
        let position =
            u32::try_from(position).map_err(|_| NoteBatchError::PositionOutOfRange { position })?;
        if self
            .offsets
            .last()
            .is_some_and(|last| last.relative_offset >= relative || last.position >= position)
        {
            return Err(NoteBatchError::NotAscending {
                base_offset,
                position: u64::from(position),
            });
        }
        if self.offsets.is_empty()
            || self.bytes_since_offset_entry >= u64::from(self.interval_bytes)
        {
            self.offsets.push(OffsetEntry {
                relative_offset: relative,
                position,
            });
            self.bytes_since_offset_entry = 0;
        }
        self.bytes_since_offset_entry += batch_bytes;
        self.bytes_since_time_entry += batch_bytes;
        // Kafka uses -1 for "no timestamp"; such batches cannot be found by time.
        if max_timestamp_ms >= 0
            && self
                .max_timestamp_ms
                .is_none_or(|(max, _)| max_timestamp_ms > max)
        {
            self.max_timestamp_ms = Some((max_timestamp_ms, relative));
            if self.times.is_empty()
                || self.bytes_since_time_entry >= u64::from(self.interval_bytes)
            {
                self.times.push(TimeEntry {
                    timestamp_ms: max_timestamp_ms,
                    relative_offset: relative,
                });
                self.bytes_since_time_entry = 0;
            }
        }
        Ok(())
    }

    /// Called when the segment is sealed: the time index ends with the segment's maximum, so
    /// a reopened segment knows it without a scan.
    pub fn seal(&mut self) {
        if let Some((timestamp_ms, relative_offset)) = self.max_timestamp_ms
            && self
                .times
                .last()
                .is_none_or(|last| last.timestamp_ms < timestamp_ms)
        {
            self.times.push(TimeEntry {
                timestamp_ms,
                relative_offset,
            });
        }
    }

    /// The file position to start scanning from for `offset`: that of the last indexed batch
    /// starting at or before it, or `None` if `offset` is before every indexed batch.
    pub fn position_for_offset(&self, offset: i64) -> Option<u64> {
        let relative = offset.checked_sub(self.base_offset)?;
        if relative < 0 {
            return None;
        }
        let relative = u32::try_from(relative).unwrap_or(u32::MAX);
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative);
        let entry = self.offsets.get(after.checked_sub(1)?)?;
        Some(u64::from(entry.position))
    }

    /// The offset to start scanning from for the first batch whose max timestamp reaches
    /// `timestamp_ms`: the batch of the last entry below it (every earlier batch is below
    /// `timestamp_ms` too), or the segment base.
    pub fn scan_start_for_timestamp(&self, timestamp_ms: i64) -> i64 {
        let below = self
            .times
            .partition_point(|entry| entry.timestamp_ms < timestamp_ms);
        match below.checked_sub(1).and_then(|index| self.times.get(index)) {
            Some(entry) => self.base_offset + i64::from(entry.relative_offset),
            None => self.base_offset,
        }
    }

    /// The offset index file contents: the record count, then the entries.
    pub fn encode_offset_index(&self) -> Vec<u8> {
        let mut entries =
            Vec::with_capacity(RECORD_COUNT_BYTES + self.offsets.len() * OFFSET_ENTRY_BYTES);
        entries.extend_from_slice(&self.record_count.to_be_bytes());
        for entry in &self.offsets {
            entries.extend_from_slice(&entry.relative_offset.to_be_bytes());
            entries.extend_from_slice(&entry.position.to_be_bytes());
        }
        with_header(
            OFFSET_INDEX_MAGIC,
            OFFSET_INDEX_FORMAT_VERSION,
            self.offsets.len(),
            entries,
        )
    }

    /// The time index file contents.
    pub fn encode_time_index(&self) -> Vec<u8> {
        let mut entries = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for entry in &self.times {
            entries.extend_from_slice(&entry.timestamp_ms.to_be_bytes());
            entries.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        with_header(
            TIME_INDEX_MAGIC,
            TIME_INDEX_FORMAT_VERSION,
            self.times.len(),
            entries,
        )
    }

    /// Loads a sealed segment's indexes from its two files, checking each entry against the
    /// segment's size and offset span (`end_offset` is the first offset after the segment).
    pub fn decode(
        base_offset: i64,
        interval_bytes: u32,
        offset_file: &[u8],
        time_file: &[u8],
        segment_bytes: u64,
        end_offset: i64,
    ) -> Result<Self, IndexFileError> {
        let span = end_offset - base_offset;
        let offset_body = checked_body(
            offset_file,
            OFFSET_INDEX_MAGIC,
            OFFSET_INDEX_FORMAT_VERSION,
            RECORD_COUNT_BYTES,
            OFFSET_ENTRY_BYTES,
        )?;
        let (count_bytes, offset_body) = offset_body.split_at(RECORD_COUNT_BYTES);
        let mut count = [0u8; RECORD_COUNT_BYTES];
        count.copy_from_slice(count_bytes);
        let record_count = u64::from_be_bytes(count);
        // Every record has its own offset in the segment.
        if i64::try_from(record_count).map_or(true, |count| count > span.max(0)) {
            return Err(IndexFileError::BadRecordCount {
                count: record_count,
                span,
            });
        }
        let mut offsets = Vec::with_capacity(offset_body.len() / OFFSET_ENTRY_BYTES);
        for (number, chunk) in offset_body.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let entry = OffsetEntry {
                relative_offset: read_u32(chunk, 0),
                position: read_u32(chunk, 4),
            };
            let ordered = offsets.last().is_none_or(|last: &OffsetEntry| {
                last.relative_offset < entry.relative_offset && last.position < entry.position
            });
            if !ordered
                || i64::from(entry.relative_offset) >= span
                || u64::from(entry.position) >= segment_bytes
            {
                return Err(IndexFileError::BadEntry(number));
            }
            offsets.push(entry);
        }
        let time_body = checked_body(
            time_file,
            TIME_INDEX_MAGIC,
            TIME_INDEX_FORMAT_VERSION,
            0,
            TIME_ENTRY_BYTES,
        )?;
        let mut times = Vec::with_capacity(time_body.len() / TIME_ENTRY_BYTES);
        for (number, chunk) in time_body.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(chunk.get(..8).unwrap_or(&[0; 8]));
            let entry = TimeEntry {
                timestamp_ms: i64::from_be_bytes(timestamp),
                relative_offset: read_u32(chunk, 8),
            };
            let ordered = times.last().is_none_or(|last: &TimeEntry| {
                last.timestamp_ms < entry.timestamp_ms
                    && last.relative_offset <= entry.relative_offset
            });
            if !ordered || i64::from(entry.relative_offset) >= span {
                return Err(IndexFileError::BadEntry(number));
            }
            times.push(entry);
        }
        // Compaction may remove a segment's first batches (or all of them), so the first
        // entry need not be at the base offset.
        let max_timestamp_ms = times
            .last()
            .map(|entry| (entry.timestamp_ms, entry.relative_offset));
        Ok(Self {
            base_offset,
            interval_bytes,
            offsets,
            times,
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            max_timestamp_ms,
            record_count,
        })
    }
}

fn read_u32(chunk: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(chunk.get(at..at + 4).unwrap_or(&[0; 4]));
    u32::from_be_bytes(bytes)
}

fn with_header(magic: [u8; 8], version: u32, count: usize, entries: Vec<u8>) -> Vec<u8> {
    let mut file = Vec::with_capacity(INDEX_HEADER_BYTES + entries.len());
    file.extend_from_slice(&magic);
    file.extend_from_slice(&version.to_be_bytes());
    file.extend_from_slice(
        &u32::try_from(count)
            .expect("index entries per segment fit in u32")
            .to_be_bytes(),
    );
    file.extend_from_slice(&crc32c::crc32c(&entries).to_be_bytes());
    file.extend_from_slice(&[0u8; 4]);
    file.extend_from_slice(&entries);
    file
}

/// The body of an index file after its checks: `leading_bytes` then the entries.
fn checked_body(
    file: &[u8],
    magic: [u8; 8],
    expected_version: u32,
    leading_bytes: usize,
    entry_bytes: usize,
) -> Result<&[u8], IndexFileError> {
    let header = file
        .get(..INDEX_HEADER_BYTES)
        .ok_or(IndexFileError::Truncated)?;
    if header.get(..8) != Some(&magic[..]) {
        return Err(IndexFileError::Foreign);
    }
    let version = read_u32(header, 8);
    if version > expected_version {
        return Err(IndexFileError::NewerVersion(version));
    }
    if version < expected_version {
        return Err(IndexFileError::OlderVersion(version));
    }
    let count = read_u32(header, 12) as usize;
    let checksum = read_u32(header, 16);
    let body = file
        .get(INDEX_HEADER_BYTES..)
        .ok_or(IndexFileError::Truncated)?;
    if body.len()
        != count
            .saturating_mul(entry_bytes)
            .saturating_add(leading_bytes)
    {
        return Err(IndexFileError::Truncated);
    }
    if crc32c::crc32c(body) != checksum {
        return Err(IndexFileError::Checksum);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Batches as (record count, bytes, max timestamp) laid out from position 16.
    fn build(batches: &[(u8, u16, i64)], interval: u32) -> (SegmentIndex, Vec<(i64, u64, i64)>) {
        let mut index = SegmentIndex::new(100, interval);
        let mut layout = Vec::new();
        let (mut offset, mut position) = (100i64, 16u64);
        for &(count, bytes, timestamp) in batches {
            index
                .note_batch(position, offset, timestamp, u64::from(bytes))
                .unwrap();
            index.note_records(u64::from(count));
            layout.push((offset, position, timestamp));
            offset += i64::from(count);
            position += u64::from(bytes);
        }
        (index, layout)
    }

    proptest! {
        // Goal: index lookups agree with a linear model over the batch list, before and after
        // an encode/decode round trip of the index files.
        #[test]
        fn lookups_match_a_linear_model(
            batches in prop::collection::vec((1u8..20, 61u16..3000, -1i64..10_000), 1..200),
            interval in 1u32..8192,
            probe_offset in 90i64..4000,
            probe_time in -5i64..10_100,
        ) {
            let (mut index, layout) = build(&batches, interval);
            index.seal();
            let end = layout.last().map(|(offset, _, _)| *offset).unwrap() + i64::from(batches.last().unwrap().0);
            let size = layout.last().unwrap().1 + u64::from(batches.last().unwrap().1);
            let reloaded = SegmentIndex::decode(100, interval, &index.encode_offset_index(), &index.encode_time_index(), size, end).unwrap();
            for candidate in [&index, &reloaded] {
                // Offset: the start position is at or before the batch containing the probe.
                let containing = layout.iter().rev().find(|(offset, _, _)| *offset <= probe_offset);
                match (candidate.position_for_offset(probe_offset), containing) {
                    (Some(position), Some((_, batch_position, _))) => prop_assert!(position <= *batch_position),
                    (None, None) => {}
                    (found, expected) => prop_assert!(false, "lookup {found:?} vs batch {expected:?}"),
                }
                // Time: no batch before the scan start reaches the probe time.
                let start = candidate.scan_start_for_timestamp(probe_time);
                for (offset, _, timestamp) in &layout {
                    if *offset < start {
                        prop_assert!(*timestamp < probe_time);
                    }
                }
                let max = layout.iter().map(|(_, _, t)| *t).filter(|t| *t >= 0).max();
                prop_assert_eq!(candidate.max_timestamp_ms(), max);
                let records: u64 = batches.iter().map(|batch| u64::from(batch.0)).sum();
                prop_assert_eq!(candidate.record_count(), records);
            }
        }
    }

    #[test]
    fn corrupt_index_files_are_refused() {
        let (mut index, _) = build(&[(5, 100, 10), (5, 5000, 20), (5, 100, 30)], 64);
        index.seal();
        let offsets = index.encode_offset_index();
        let times = index.encode_time_index();
        assert!(SegmentIndex::decode(100, 64, &offsets, &times, 5216, 115).is_ok());
        assert_eq!(
            SegmentIndex::decode(100, 64, &offsets[..10], &times, 5216, 115),
            Err(IndexFileError::Truncated)
        );
        let mut flipped = offsets.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            SegmentIndex::decode(100, 64, &flipped, &times, 5216, 115),
            Err(IndexFileError::Checksum)
        );
        assert_eq!(
            SegmentIndex::decode(100, 64, &times, &offsets, 5216, 115),
            Err(IndexFileError::Foreign)
        );
        // A version 1 offset index (no record count) is rebuilt, not read as one.
        let mut older = offsets.clone();
        older[8..12].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(
            SegmentIndex::decode(100, 64, &older, &times, 5216, 115),
            Err(IndexFileError::OlderVersion(1))
        );
        // More records than offsets is refused even with a valid checksum.
        let mut inflated = index.clone();
        inflated.note_records(1);
        assert_eq!(
            SegmentIndex::decode(100, 64, &inflated.encode_offset_index(), &times, 5216, 115),
            Err(IndexFileError::BadRecordCount {
                count: 16,
                span: 15
            })
        );
        // Entries pointing past the segment end are refused even with a valid checksum.
        assert_eq!(
            SegmentIndex::decode(100, 64, &offsets, &times, 200, 115),
            Err(IndexFileError::BadEntry(2))
        );
    }
}

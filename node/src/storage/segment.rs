//! Segment files: names, the 16-byte file header, and when to roll (pure).
//!
//! A partition directory holds, per segment, `<base offset:020>.log` (a header, then Kafka
//! RecordBatch v2 bytes back to back), `.index` and `.timeindex` (written when the segment
//! is sealed), plus one `checkpoint` file. Anything else there is a foreign file, except
//! `*.tmp` leftovers of our own, which are removed. See docs/FORMAT.md.

/// Bytes of the header at the start of every segment file.
pub const SEGMENT_HEADER_BYTES: u64 = 16;
/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LEDGESEG";
/// The segment format this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;

/// Kinds of file that may live in a partition directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionFile {
    /// `<base>.log`: a segment.
    Segment(i64),
    /// `<base>.index`: the sparse offset index of a sealed segment.
    OffsetIndex(i64),
    /// `<base>.timeindex`: the sparse time index of a sealed segment.
    TimeIndex(i64),
    /// `<base>.snapshot`: idempotent-producer state as of the start of segment `<base>`.
    ProducerSnapshot(i64),
    /// `checkpoint`: log start offset and recovery point.
    Checkpoint,
    /// `leader-epoch-checkpoint`: leader epoch -> start offset (`storage::leader_epoch`).
    LeaderEpochCheckpoint,
    /// `*.tmp`: an unfinished write of ours, safe to delete.
    Temporary,
    /// `*.damaged`: bytes a replica's repair cut from its log, kept for forensics
    /// ([`DAMAGED_FILE_SUFFIX`], `storage::repair::truncate_at_damage`); never read.
    Damaged,
}

/// Suffix of the files a replica's repair keeps the cut bytes in; the operator removes them.
pub const DAMAGED_FILE_SUFFIX: &str = ".damaged";

/// Name of the checkpoint file in a partition directory.
pub const CHECKPOINT_FILE_NAME: &str = "checkpoint";

/// Classifies a directory entry; `None` for a name Ledge never writes.
pub fn parse_file_name(name: &str) -> Option<PartitionFile> {
    if name == CHECKPOINT_FILE_NAME {
        return Some(PartitionFile::Checkpoint);
    }
    if name == super::leader_epoch::LEADER_EPOCH_FILE_NAME {
        return Some(PartitionFile::LeaderEpochCheckpoint);
    }
    if name.ends_with(".tmp") {
        return Some(PartitionFile::Temporary);
    }
    if name.ends_with(DAMAGED_FILE_SUFFIX) {
        return Some(PartitionFile::Damaged);
    }
    let (stem, extension) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let base: i64 = stem.parse().ok()?;
    match extension {
        "log" => Some(PartitionFile::Segment(base)),
        "index" => Some(PartitionFile::OffsetIndex(base)),
        "timeindex" => Some(PartitionFile::TimeIndex(base)),
        "snapshot" => Some(PartitionFile::ProducerSnapshot(base)),
        _ => None,
    }
}

/// `<base:020>.log`
pub fn segment_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

/// `<base:020>.index`
pub fn offset_index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.index")
}

/// `<base:020>.timeindex`
pub fn time_index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.timeindex")
}

/// `<base:020>.snapshot`
pub fn producer_snapshot_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.snapshot")
}

/// Header flag: the segment was rewritten by compaction, so its batches may have offset
/// gaps between them (and inside them).
pub const SEGMENT_FLAG_COMPACTED: u32 = 1;
const SEGMENT_FLAGS_KNOWN: u32 = SEGMENT_FLAG_COMPACTED;

/// The header every segment file starts with.
pub fn segment_header() -> [u8; SEGMENT_HEADER_BYTES as usize] {
    segment_header_with_flags(0)
}

/// A segment header with `flags` (see `SEGMENT_FLAG_*`).
pub fn segment_header_with_flags(flags: u32) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_be_bytes());
    header[12..16].copy_from_slice(&flags.to_be_bytes());
    header
}

/// Why a segment header was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentHeaderError {
    /// Shorter than a header.
    #[error("segment header truncated ({found} of {SEGMENT_HEADER_BYTES} bytes)")]
    Truncated {
        /// Bytes present.
        found: usize,
    },
    /// Not a Ledge segment at all.
    #[error("not a Ledge segment (bad magic)")]
    Foreign,
    /// Written by a newer Ledge.
    #[error(
        "segment format version {found} is newer than this build supports ({SEGMENT_FORMAT_VERSION})"
    )]
    NewerVersion {
        /// Version in the file.
        found: u32,
    },
}

/// Checks the header at the start of a segment file; returns its flags.
pub fn check_segment_header(bytes: &[u8]) -> Result<u32, SegmentHeaderError> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES as usize) else {
        return Err(SegmentHeaderError::Truncated { found: bytes.len() });
    };
    if header.get(..8) != Some(&SEGMENT_MAGIC[..]) {
        return Err(SegmentHeaderError::Foreign);
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(header.get(8..12).unwrap_or(&[0; 4]));
    let version = u32::from_be_bytes(version);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(SegmentHeaderError::NewerVersion { found: version });
    }
    let mut flags = [0u8; 4];
    flags.copy_from_slice(header.get(12..16).unwrap_or(&[0; 4]));
    let flags = u32::from_be_bytes(flags);
    if flags & !SEGMENT_FLAGS_KNOWN != 0 {
        // A flag this build does not know changes how the segment must be read.
        return Err(SegmentHeaderError::NewerVersion { found: version });
    }
    Ok(flags)
}

/// When the active segment is closed and a new one started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollPolicy {
    /// Roll before a write would take the segment past this size (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll once the segment's first append is this old (`segment.ms`).
    pub segment_age_ms: i64,
}

/// What the roll decision needs to know about the active segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveSegmentStats {
    /// First offset of the segment.
    pub base_offset: i64,
    /// File size including the header.
    pub size_bytes: u64,
    /// Wall time of the first append, or `None` while it is empty.
    pub first_append_ms: Option<i64>,
}

/// Why a segment was rolled (for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollReason {
    /// `segment.ms` elapsed.
    Age,
    /// Relative offsets in the index are 32-bit.
    OffsetSpan,
    /// `segment.bytes` would be exceeded.
    Size,
}

// One batch spans at most `i32::MAX + 1` offsets (its `last_offset_delta` is an `i32`), which
// the index's `u32` relative offsets hold, so an empty segment can always take the next
// batch: rolling it would not help, and `roll_reason` never does.
const _: () = assert!((i32::MAX as u64) < u32::MAX as u64);

/// Decides whether to roll before writing `incoming_bytes` whose last offset is
/// `incoming_last_offset`.
///
/// An empty segment (nothing after its header) never rolls: its successor would start at the
/// same offset, and one write that alone exceeds `segment.bytes` must still land somewhere.
/// Emptiness is read from the size, not from `first_append_ms`, which is unknown for a
/// segment reopened with data in it: the size and offset-span rules hold for that segment's
/// first write after a restart too. The offset span is checked first, because the index
/// stores 32-bit relative offsets and cannot take a batch past them at all.
///
/// The writer asks once per batch (and once more per group), so no write spans more offsets
/// or bytes than one segment can index.
pub fn roll_reason(
    segment: &ActiveSegmentStats,
    incoming_bytes: u64,
    incoming_last_offset: i64,
    now_ms: i64,
    policy: &RollPolicy,
) -> Option<RollReason> {
    if segment.size_bytes <= SEGMENT_HEADER_BYTES {
        return None;
    }
    if incoming_last_offset.saturating_sub(segment.base_offset) > i64::from(u32::MAX) {
        return Some(RollReason::OffsetSpan);
    }
    if segment.size_bytes.saturating_add(incoming_bytes) > policy.segment_bytes {
        return Some(RollReason::Size);
    }
    if let Some(first_append_ms) = segment.first_append_ms
        && now_ms.saturating_sub(first_append_ms) >= policy.segment_age_ms
    {
        return Some(RollReason::Age);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_foreign_names_are_refused() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(
            parse_file_name(&segment_file_name(42)),
            Some(PartitionFile::Segment(42))
        );
        assert_eq!(
            parse_file_name(&offset_index_file_name(7)),
            Some(PartitionFile::OffsetIndex(7))
        );
        assert_eq!(
            parse_file_name(&time_index_file_name(7)),
            Some(PartitionFile::TimeIndex(7))
        );
        assert_eq!(
            parse_file_name("checkpoint"),
            Some(PartitionFile::Checkpoint)
        );
        assert_eq!(parse_file_name("x.tmp"), Some(PartitionFile::Temporary));
        assert_eq!(
            parse_file_name("00000000000000000000.log.128.damaged"),
            Some(PartitionFile::Damaged)
        );
        assert_eq!(
            parse_file_name("leader-epoch-checkpoint"),
            Some(PartitionFile::LeaderEpochCheckpoint)
        );
        for foreign in [
            "notes.txt",
            "42.log",
            "0000000000000000004a.log",
            "00000000000000000042.bak",
            ".DS_Store",
        ] {
            assert_eq!(parse_file_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn header_checks_magic_and_version() {
        assert_eq!(check_segment_header(&segment_header()), Ok(0));
        assert_eq!(
            check_segment_header(&segment_header_with_flags(SEGMENT_FLAG_COMPACTED)),
            Ok(SEGMENT_FLAG_COMPACTED)
        );
        assert!(check_segment_header(&segment_header_with_flags(8)).is_err());
        assert_eq!(
            check_segment_header(&[1, 2, 3]),
            Err(SegmentHeaderError::Truncated { found: 3 })
        );
        let mut foreign = segment_header();
        foreign[0] = b'X';
        assert_eq!(
            check_segment_header(&foreign),
            Err(SegmentHeaderError::Foreign)
        );
        let mut newer = segment_header();
        newer[8..12].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            check_segment_header(&newer),
            Err(SegmentHeaderError::NewerVersion { found: 2 })
        );
    }

    #[test]
    fn roll_by_size_age_and_span_but_never_when_empty() {
        let policy = RollPolicy {
            segment_bytes: 1000,
            segment_age_ms: 60_000,
        };
        let empty = ActiveSegmentStats {
            base_offset: 0,
            size_bytes: 16,
            first_append_ms: None,
        };
        assert_eq!(roll_reason(&empty, 10_000, 5, 0, &policy), None);
        let used = ActiveSegmentStats {
            base_offset: 0,
            size_bytes: 900,
            first_append_ms: Some(1_000),
        };
        assert_eq!(roll_reason(&used, 50, 5, 1_000, &policy), None);
        assert_eq!(
            roll_reason(&used, 101, 5, 1_000, &policy),
            Some(RollReason::Size)
        );
        assert_eq!(
            roll_reason(&used, 50, 5, 61_000, &policy),
            Some(RollReason::Age)
        );
        assert_eq!(
            roll_reason(&used, 50, i64::from(u32::MAX) + 1, 1_000, &policy),
            Some(RollReason::OffsetSpan)
        );
        // A segment reopened with data has no first-append time; size and span still apply.
        let reopened = ActiveSegmentStats {
            first_append_ms: None,
            ..used
        };
        assert_eq!(
            roll_reason(&reopened, 101, 5, 1_000, &policy),
            Some(RollReason::Size)
        );
        assert_eq!(
            roll_reason(&reopened, 50, i64::from(u32::MAX) + 1, 1_000, &policy),
            Some(RollReason::OffsetSpan)
        );
        assert_eq!(roll_reason(&reopened, 50, 5, 61_000, &policy), None);
    }
}

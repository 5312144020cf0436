//! Verifying sealed segments in the background: one step at a time, so the caller paces it.
//!
//! Sealed segments are checked once when they are written (CRC on append) and again only if
//! their index is lost; damage that appears later (media errors, a bad controller, a stray
//! write) would otherwise surface only when a consumer reads it. [`SegmentCheck`] walks one
//! sealed segment with the same scan recovery uses ([`super::recovery::scan`]: length,
//! magic, CRC-32C, dense offsets) and ends clean or with a [`SegmentDamage`] naming the
//! file, the byte position and the first offset that may be affected.
//!
//! Owns no schedule and no clock: the broker's verifier task (`Broker::run_verifier`)
//! decides which segment is next and sleeps between steps to keep to
//! `log.verify_bytes_per_second`. A check holds no file: each step opens the segment's file
//! through its log, by the file id the check began with, so it never reads a file that
//! compaction put in place of the one it was checking (which would look damaged: other
//! size, other offsets). A check whose segment was replaced or removed since it began is
//! abandoned ([`VerifyStep::Abandoned`]), never reported as damage; the next pass checks
//! the new file.

use std::path::PathBuf;
use std::sync::Weak;

use ledge_protocol::BATCH_LENGTH_PREFIX_BYTES;

use super::disk::{Disk, DiskError, DiskFile};
use super::log::Shared;
use super::recovery::{self, ScanStop};

/// Damage found in a sealed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentDamage {
    /// The segment file.
    pub path: PathBuf,
    /// Base offset of the segment.
    pub segment_base: i64,
    /// File position of the first damaged batch.
    pub position: u64,
    /// The first offset that may be affected (the damaged batch should have started there).
    pub first_offset: i64,
    /// What was wrong.
    pub reason: String,
    /// When it was found, ms since the epoch (the node's clock).
    pub found_ms: i64,
}

impl std::fmt::Display for SegmentDamage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "segment {} is corrupt at byte {} (offset {} on): {}",
            self.path.display(),
            self.position,
            self.first_offset,
            self.reason
        )
    }
}

/// What one [`SegmentCheck::step`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyStep {
    /// Read this many bytes; the segment is good so far.
    Read(u64),
    /// The whole segment is valid.
    Clean,
    /// The segment is damaged; the check is over.
    Damaged(SegmentDamage),
    /// Compaction replaced the segment's file, or retention or a close removed it, since
    /// the check began; the check is over and found nothing (a later pass checks the new
    /// file).
    Abandoned,
}

/// The verification of one sealed segment, in progress.
pub struct SegmentCheck<D: Disk> {
    pub(super) path: PathBuf,
    /// The log and the sealed file's id in the node's sealed-file cache: the file is opened
    /// through the log for each step rather than held, so verifying a partition's segments
    /// keeps no descriptor open beyond the open-file budget (issue 11, data item 8), and
    /// only while the segment still has this file. Weak, so a check never keeps a closed
    /// log's files open.
    pub(super) log: Weak<Shared<D>>,
    pub(super) sealed_file_id: u64,
    pub(super) segment_base: i64,
    /// File size when the check began (a sealed segment never grows).
    pub(super) size: u64,
    /// The next segment's base offset: where this one must end.
    pub(super) end_offset: i64,
    /// Rewritten by compaction: offsets may skip, and its last records may be gone.
    pub(super) compacted: bool,
    pub(super) position: u64,
    pub(super) next_offset: i64,
    /// Bytes to read next: more than one step's worth when a batch is larger.
    pub(super) want: u64,
}

impl<D: Disk> SegmentCheck<D> {
    /// The segment's base offset.
    pub fn segment_base(&self) -> i64 {
        self.segment_base
    }

    /// Reads and checks the next `read_bytes` (or the whole next batch, if larger).
    pub async fn step(&mut self, read_bytes: u64, now_ms: i64) -> Result<VerifyStep, DiskError> {
        if self.position >= self.size {
            return Ok(self.finish(now_ms));
        }
        let length = self.want.max(read_bytes).min(self.size - self.position);
        let Some(log) = self.log.upgrade() else {
            return Ok(VerifyStep::Abandoned);
        };
        let Some(file) = log
            .open_sealed_segment(self.segment_base, self.sealed_file_id)
            .await?
        else {
            return Ok(VerifyStep::Abandoned);
        };
        drop(log);
        let bytes = file.read_at(self.position, length as usize).await?;
        let read = bytes.len() as u64;
        if read < length {
            return Ok(self.damaged(
                self.position + read,
                format!(
                    "the file ends at byte {}, before its size when sealed ({})",
                    self.position + read,
                    self.size
                ),
                now_ms,
            ));
        }
        let result = recovery::scan(
            &bytes,
            self.position,
            self.next_offset,
            self.compacted,
            &mut |_, _, _| Ok(()),
        );
        self.position = result.valid_end;
        self.next_offset = result.next_offset;
        self.want = read_bytes;
        match result.stop {
            ScanStop::End => {}
            ScanStop::Incomplete {
                position,
                total_bytes,
            } => {
                let needed = total_bytes.unwrap_or(BATCH_LENGTH_PREFIX_BYTES as u64);
                if position.saturating_add(needed) > self.size {
                    return Ok(self.damaged(
                        position,
                        format!("batch of {needed} bytes is cut off by the end of the file"),
                        now_ms,
                    ));
                }
                self.want = needed;
            }
            ScanStop::Invalid { position, reason } => {
                return Ok(self.damaged(position, reason, now_ms));
            }
        }
        Ok(VerifyStep::Read(read))
    }

    fn finish(&self, now_ms: i64) -> VerifyStep {
        // Compaction may have removed the segment's last records, never added any.
        let ends_right = if self.compacted {
            self.next_offset <= self.end_offset
        } else {
            self.next_offset == self.end_offset
        };
        if ends_right {
            VerifyStep::Clean
        } else {
            self.damaged(
                self.position,
                format!(
                    "sealed segment ends at offset {}, but the next segment starts at {}",
                    self.next_offset, self.end_offset
                ),
                now_ms,
            )
        }
    }

    fn damaged(&self, position: u64, reason: String, now_ms: i64) -> VerifyStep {
        // What was read is of the file this check began with; if compaction has replaced
        // it since (after the last open), the damage is not the segment's now.
        let current = self.log.upgrade().is_some_and(|log| {
            log.sealed_segment_path(self.segment_base, self.sealed_file_id)
                .is_some()
        });
        if !current {
            return VerifyStep::Abandoned;
        }
        VerifyStep::Damaged(SegmentDamage {
            path: self.path.clone(),
            segment_base: self.segment_base,
            position,
            first_offset: self.next_offset,
            reason,
            found_ms: now_ms,
        })
    }
}

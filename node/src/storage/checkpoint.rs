//! The partition checkpoint: log start offset and recovery point (pure encode/decode).
//!
//! The file has two 64-byte slots written alternately, each with a sequence number and a
//! CRC-32C; the valid slot with the higher sequence wins. A write torn by a crash damages
//! only the slot being written, so the previous checkpoint survives. One `fdatasync` per
//! update, no rename, no directory sync after the file's creation.
//!
//! The recovery point is a position in a segment below which every byte was synced before
//! the checkpoint was written: recovery truncates a bad tail only above it, and reports
//! anything bad below it as corruption.

/// Bytes of one slot.
pub const SLOT_BYTES: usize = 64;
/// Bytes of the whole file.
pub const CHECKPOINT_FILE_BYTES: usize = 2 * SLOT_BYTES;
const MAGIC: [u8; 4] = *b"LCKP";
const FORMAT_VERSION: u16 = 1;
const CHECKED_BYTES: usize = 44;
/// The largest sequence a slot may hold. Sequences grow by one per write (at most a few a
/// second), so a valid slot never comes near it; refusing more keeps every `sequence + 1`
/// the log computes from a decoded checkpoint free of overflow.
pub const SEQUENCE_MAX: u64 = 1 << 62;

/// The durable facts about a partition that its segments do not say themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Increases by one per write; picks the newer slot.
    pub sequence: u64,
    /// First offset a reader may see (`delete_before` moves it).
    pub log_start_offset: i64,
    /// Base offset of the segment the recovery point is in.
    pub recovery_segment: i64,
    /// File position in that segment below which everything was synced.
    pub recovery_position: u64,
}

/// Why a checkpoint file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Neither slot holds a valid checkpoint.
    #[error("no valid checkpoint slot (both fail their checksum or magic)")]
    NoValidSlot,
    /// Written by a newer Ledge.
    #[error("checkpoint format version {0} is newer than this build supports ({FORMAT_VERSION})")]
    NewerVersion(u16),
    /// A slot passes its checksum but holds a sequence no writer reaches: not ours.
    #[error("checkpoint sequence {0} is beyond any this node writes ({SEQUENCE_MAX})")]
    SequenceOutOfRange(u64),
}

impl Checkpoint {
    /// The slot this checkpoint is written to: alternate, so the other survives a torn write.
    pub fn slot_position(&self) -> u64 {
        (self.sequence % 2) * SLOT_BYTES as u64
    }

    /// One slot's bytes.
    pub fn encode(&self) -> [u8; SLOT_BYTES] {
        let mut slot = [0u8; SLOT_BYTES];
        slot[0..4].copy_from_slice(&MAGIC);
        slot[4..6].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        slot[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        slot[16..24].copy_from_slice(&self.log_start_offset.to_be_bytes());
        slot[24..32].copy_from_slice(&self.recovery_segment.to_be_bytes());
        slot[32..40].copy_from_slice(&self.recovery_position.to_be_bytes());
        let checksum = crc32c::crc32c(&slot[..40]);
        slot[40..CHECKED_BYTES].copy_from_slice(&checksum.to_be_bytes());
        slot
    }

    /// The newest valid checkpoint in a file's bytes.
    pub fn decode(file: &[u8]) -> Result<Self, CheckpointError> {
        let mut newest: Option<Self> = None;
        for slot in file.chunks(SLOT_BYTES).take(2) {
            match decode_slot(slot) {
                Ok(Some(checkpoint)) => {
                    if newest.is_none_or(|current| checkpoint.sequence > current.sequence) {
                        newest = Some(checkpoint);
                    }
                }
                Ok(None) => {}
                Err(error) => return Err(error),
            }
        }
        newest.ok_or(CheckpointError::NoValidSlot)
    }
}

fn field<const N: usize>(slot: &[u8], at: usize) -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Some(source) = slot.get(at..at + N) {
        bytes.copy_from_slice(source);
    }
    bytes
}

fn decode_slot(slot: &[u8]) -> Result<Option<Checkpoint>, CheckpointError> {
    let Some(checked) = slot.get(..CHECKED_BYTES) else {
        return Ok(None);
    };
    if checked.get(..4) != Some(&MAGIC[..]) {
        return Ok(None);
    }
    let stored = u32::from_be_bytes(field(slot, 40));
    if crc32c::crc32c(checked.get(..40).unwrap_or(&[])) != stored {
        return Ok(None);
    }
    let version = u16::from_be_bytes(field(slot, 4));
    if version != FORMAT_VERSION {
        return Err(CheckpointError::NewerVersion(version));
    }
    let sequence = u64::from_be_bytes(field(slot, 8));
    if sequence > SEQUENCE_MAX {
        return Err(CheckpointError::SequenceOutOfRange(sequence));
    }
    Ok(Some(Checkpoint {
        sequence,
        log_start_offset: i64::from_be_bytes(field(slot, 16)),
        recovery_segment: i64::from_be_bytes(field(slot, 24)),
        recovery_position: u64::from_be_bytes(field(slot, 32)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(checkpoints: &[Checkpoint]) -> Vec<u8> {
        let mut file = vec![0u8; CHECKPOINT_FILE_BYTES];
        for checkpoint in checkpoints {
            let at = checkpoint.slot_position() as usize;
            file[at..at + SLOT_BYTES].copy_from_slice(&checkpoint.encode());
        }
        file
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let older = Checkpoint {
            sequence: 4,
            log_start_offset: 10,
            recovery_segment: 0,
            recovery_position: 500,
        };
        let newer = Checkpoint {
            sequence: 5,
            log_start_offset: 12,
            recovery_segment: 100,
            recovery_position: 16,
        };
        let mut file = file_with(&[older, newer]);
        assert_eq!(Checkpoint::decode(&file), Ok(newer));
        // Tear the newer slot: the older one is still there.
        let at = newer.slot_position() as usize + 20;
        file[at] ^= 0xff;
        assert_eq!(Checkpoint::decode(&file), Ok(older));
        assert_eq!(
            Checkpoint::decode(&[0u8; 10]),
            Err(CheckpointError::NoValidSlot)
        );
        assert_eq!(Checkpoint::decode(&[]), Err(CheckpointError::NoValidSlot));
    }

    #[test]
    fn newer_format_is_refused() {
        let checkpoint = Checkpoint {
            sequence: 1,
            log_start_offset: 0,
            recovery_segment: 0,
            recovery_position: 16,
        };
        let mut slot = checkpoint.encode();
        slot[4..6].copy_from_slice(&2u16.to_be_bytes());
        let checksum = crc32c::crc32c(&slot[..40]);
        slot[40..44].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(
            Checkpoint::decode(&slot),
            Err(CheckpointError::NewerVersion(2))
        );
    }

    // Goal: bytes that are not a checkpoint never panic the decoder: random files of every
    // length up to two slots, and slots whose checksum is right but whose sequence no writer
    // reaches (which would overflow the next write's `sequence + 1`), are refused.
    #[test]
    fn garbage_and_impossible_sequences_are_refused() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for length in 0..=CHECKPOINT_FILE_BYTES + 3 {
            let mut bytes = vec![0u8; length];
            rng.fill(&mut bytes[..]);
            assert_eq!(
                Checkpoint::decode(&bytes),
                Err(CheckpointError::NoValidSlot),
                "{length} random bytes"
            );
        }
        let last = Checkpoint {
            sequence: u64::MAX,
            log_start_offset: 0,
            recovery_segment: 0,
            recovery_position: 16,
        };
        assert_eq!(
            Checkpoint::decode(&last.encode()),
            Err(CheckpointError::SequenceOutOfRange(u64::MAX))
        );
        let most = Checkpoint {
            sequence: SEQUENCE_MAX,
            ..last
        };
        assert_eq!(Checkpoint::decode(&most.encode()), Ok(most));
    }
}

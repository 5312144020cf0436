//! Stage 2's deduplication of the repartition topic by source offset (pure).
//!
//! Owns: the `ledge.src` header (which input partition and offset a re-keyed record came
//! from) and the apply-or-skip decision against the commit position's map of the highest
//! source offset applied per input partition.
//! Does not own: the map's persistence (it is `CommitPosition::source_offsets`).
//!
//! Stage 1 is at-least-once: after a crash it re-reads a suffix of its input and appends
//! those records to the repartition topic again. Per source partition it writes each
//! repartition partition in source-offset order, so a record whose source offset is at or
//! below the highest applied for its source partition is a repeat: skipped. Decisions update
//! the map as they go, so a repeat inside one chunk is skipped too.
//!
//! Header value: `input partition u32, input offset i64`, big-endian, exactly 12 bytes.

use std::collections::BTreeMap;

use thiserror::Error;

/// The header stage 1 puts on each re-keyed record.
pub const SOURCE_HEADER: &str = "ledge.src";

const SOURCE_HEADER_BYTES: usize = 12;

/// Where a re-keyed record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOffset {
    /// The input partition.
    pub partition: u32,
    /// The record's offset there.
    pub offset: i64,
}

/// A repartition record whose `ledge.src` header is unusable (the record fails by the
/// transform's error policy: only stage 1 writes the topic, so this is damage or a bug).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceHeaderError {
    /// No `ledge.src` header.
    #[error("repartition record has no ledge.src header")]
    Missing,
    /// More than one.
    #[error("repartition record has {count} ledge.src headers")]
    Repeated {
        /// How many.
        count: usize,
    },
    /// A null value.
    #[error("repartition record's ledge.src header is null")]
    Null,
    /// Not 12 bytes.
    #[error("repartition record's ledge.src header is {length} bytes, not 12")]
    WrongLength {
        /// Its length.
        length: usize,
    },
    /// A negative offset.
    #[error("repartition record's ledge.src header has negative offset {offset}")]
    NegativeOffset {
        /// The offset.
        offset: i64,
    },
}

impl SourceOffset {
    /// The header value.
    #[must_use]
    pub fn encode(&self) -> [u8; SOURCE_HEADER_BYTES] {
        let mut out = [0; SOURCE_HEADER_BYTES];
        out[..4].copy_from_slice(&self.partition.to_be_bytes());
        out[4..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    /// Parses a header value.
    ///
    /// # Errors
    /// [`SourceHeaderError`].
    pub fn decode(value: &[u8]) -> Result<Self, SourceHeaderError> {
        let bytes: &[u8; SOURCE_HEADER_BYTES] =
            value
                .try_into()
                .map_err(|_| SourceHeaderError::WrongLength {
                    length: value.len(),
                })?;
        let (partition, offset) = bytes.split_at(4);
        let partition = u32::from_be_bytes(partition.try_into().unwrap_or_default());
        let offset = i64::from_be_bytes(offset.try_into().unwrap_or_default());
        if offset < 0 {
            return Err(SourceHeaderError::NegativeOffset { offset });
        }
        Ok(Self { partition, offset })
    }

    /// Finds and parses the one `ledge.src` header among a record's headers.
    ///
    /// # Errors
    /// [`SourceHeaderError`].
    pub fn from_headers<'h>(
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) -> Result<Self, SourceHeaderError> {
        let mut found = None;
        let mut count = 0;
        for (name, value) in headers {
            if name == SOURCE_HEADER {
                count += 1;
                found = Some(value);
            }
        }
        match (count, found) {
            (0, _) | (_, None) => Err(SourceHeaderError::Missing),
            (1, Some(None)) => Err(SourceHeaderError::Null),
            (1, Some(Some(value))) => Self::decode(value),
            (count, _) => Err(SourceHeaderError::Repeated { count }),
        }
    }
}

/// Whether stage 2 applies a repartition record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedup {
    /// New: apply it (the map now records its offset).
    Apply,
    /// At or below the highest offset applied from its source partition: a repeat.
    Skip,
}

/// Decides for one record and records an applied one in `applied` (the position's
/// `source_offsets`).
pub fn decide(applied: &mut BTreeMap<u32, i64>, source: SourceOffset) -> Dedup {
    match applied.get(&source.partition) {
        Some(highest) if source.offset <= *highest => Dedup::Skip,
        _ => {
            applied.insert(source.partition, source.offset);
            Dedup::Apply
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_header_round_trips_and_bad_ones_are_named() {
        let source = SourceOffset {
            partition: 7,
            offset: 1 << 40,
        };
        assert_eq!(SourceOffset::decode(&source.encode()), Ok(source));
        assert_eq!(
            SourceOffset::decode(&[0; 11]),
            Err(SourceHeaderError::WrongLength { length: 11 })
        );
        let mut negative = source.encode();
        negative[4] = 0xff;
        assert!(matches!(
            SourceOffset::decode(&negative),
            Err(SourceHeaderError::NegativeOffset { .. })
        ));
        let value = source.encode();
        assert_eq!(
            SourceOffset::from_headers([("a", None), (SOURCE_HEADER, Some(&value[..]))]),
            Ok(source)
        );
        assert_eq!(
            SourceOffset::from_headers([("a", Some(&value[..]))]),
            Err(SourceHeaderError::Missing)
        );
        assert_eq!(
            SourceOffset::from_headers([(SOURCE_HEADER, None)]),
            Err(SourceHeaderError::Null)
        );
        let error = SourceOffset::from_headers([
            (SOURCE_HEADER, Some(&value[..])),
            (SOURCE_HEADER, Some(&value[..])),
        ])
        .unwrap_err();
        assert_eq!(error, SourceHeaderError::Repeated { count: 2 });
        assert!(error.to_string().contains("ledge.src"));
    }

    #[test]
    fn repeats_at_or_below_the_highest_applied_are_skipped_per_partition() {
        let mut applied = BTreeMap::new();
        let at = |partition, offset| SourceOffset { partition, offset };
        assert_eq!(decide(&mut applied, at(0, 5)), Dedup::Apply);
        assert_eq!(decide(&mut applied, at(1, 2)), Dedup::Apply);
        assert_eq!(decide(&mut applied, at(0, 5)), Dedup::Skip);
        assert_eq!(decide(&mut applied, at(0, 3)), Dedup::Skip);
        assert_eq!(decide(&mut applied, at(1, 3)), Dedup::Apply);
        assert_eq!(decide(&mut applied, at(0, 6)), Dedup::Apply);
        assert_eq!(applied, [(0, 6), (1, 3)].into_iter().collect());
    }

    proptest! {
        #[test]
        fn arbitrary_header_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = SourceOffset::decode(&value);
        }

        /// Stage 1 crashes and repeats suffixes of each source partition (interleaved across
        /// partitions); stage 2 applies each source record exactly once.
        #[test]
        fn replayed_suffixes_are_applied_exactly_once(
            runs in proptest::collection::vec((0u32..3, 0i64..20, 0i64..20), 1..20),
        ) {
            let mut written = Vec::new();
            let mut next = [0i64; 3];
            for (partition, back, ahead) in runs {
                let p = partition as usize;
                let from = (next[p] - back).max(0);
                let to = next[p] + ahead;
                for offset in from..to {
                    written.push(SourceOffset { partition, offset });
                }
                next[p] = next[p].max(to);
            }
            let mut applied = BTreeMap::new();
            let mut seen = Vec::new();
            for source in written {
                if decide(&mut applied, source) == Dedup::Apply {
                    seen.push((source.partition, source.offset));
                }
            }
            let mut expected: Vec<_> = (0u32..3).flat_map(|p| (0..next[p as usize]).map(move |o| (p, o))).collect();
            seen.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(seen, expected);
        }
    }
}

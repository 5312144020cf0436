//! What a plug-in function may return, per kind: the plain value or a `Result` of it.
//!
//! The generated glue converts the return value with one of these traits. An `Err` becomes an
//! `ERROR` entry for that record, carrying the error's `Display` text to the operator (a
//! dead-letter header, a fetch error or a log line, by the deployment's error policy).

use std::fmt::Display;

use crate::output::OutputRecord;

/// A `#[filter]` result: `bool` (`true` keeps the record) or `Result<bool, E>`.
#[diagnostic::on_unimplemented(
    message = "a `#[filter]` function returns `bool` or `Result<bool, E>` with `E: Display`, \
               not `{Self}`"
)]
pub trait IntoFilterOutcome {
    /// `Ok(keep)`, or the error message.
    fn into_filter_outcome(self) -> Result<bool, String>;
}

impl IntoFilterOutcome for bool {
    fn into_filter_outcome(self) -> Result<bool, String> {
        Ok(self)
    }
}

impl<E: Display> IntoFilterOutcome for Result<bool, E> {
    fn into_filter_outcome(self) -> Result<bool, String> {
        self.map_err(|error| error.to_string())
    }
}

/// A `#[map]` result: [`OutputRecord`] or `Result<OutputRecord, E>`.
#[diagnostic::on_unimplemented(
    message = "a `#[map]` function returns `OutputRecord` or `Result<OutputRecord, E>` with \
               `E: Display`, not `{Self}`"
)]
pub trait IntoMapOutcome {
    /// The replacement record, or the error message.
    fn into_map_outcome(self) -> Result<OutputRecord, String>;
}

impl IntoMapOutcome for OutputRecord {
    fn into_map_outcome(self) -> Result<OutputRecord, String> {
        Ok(self)
    }
}

impl<E: Display> IntoMapOutcome for Result<OutputRecord, E> {
    fn into_map_outcome(self) -> Result<OutputRecord, String> {
        self.map_err(|error| error.to_string())
    }
}

/// A `#[filter_map]` result: `Option<OutputRecord>` (`None` drops the record) or
/// `Result<Option<OutputRecord>, E>`.
#[diagnostic::on_unimplemented(
    message = "a `#[filter_map]` function returns `Option<OutputRecord>` or \
               `Result<Option<OutputRecord>, E>` with `E: Display`, not `{Self}`"
)]
pub trait IntoFilterMapOutcome {
    /// The replacement record (`None` drops it), or the error message.
    fn into_filter_map_outcome(self) -> Result<Option<OutputRecord>, String>;
}

impl IntoFilterMapOutcome for Option<OutputRecord> {
    fn into_filter_map_outcome(self) -> Result<Option<OutputRecord>, String> {
        Ok(self)
    }
}

impl<E: Display> IntoFilterMapOutcome for Result<Option<OutputRecord>, E> {
    fn into_filter_map_outcome(self) -> Result<Option<OutputRecord>, String> {
        self.map_err(|error| error.to_string())
    }
}

/// A `#[flat_map]` result: `Vec<OutputRecord>` (empty drops the record) or
/// `Result<Vec<OutputRecord>, E>`.
#[diagnostic::on_unimplemented(
    message = "a `#[flat_map]` function returns `Vec<OutputRecord>` or \
               `Result<Vec<OutputRecord>, E>` with `E: Display`, not `{Self}`"
)]
pub trait IntoFlatMapOutcome {
    /// The replacement records (none drops the record), or the error message.
    fn into_flat_map_outcome(self) -> Result<Vec<OutputRecord>, String>;
}

impl IntoFlatMapOutcome for Vec<OutputRecord> {
    fn into_flat_map_outcome(self) -> Result<Vec<OutputRecord>, String> {
        Ok(self)
    }
}

impl<E: Display> IntoFlatMapOutcome for Result<Vec<OutputRecord>, E> {
    fn into_flat_map_outcome(self) -> Result<Vec<OutputRecord>, String> {
        self.map_err(|error| error.to_string())
    }
}

/// A `#[partitioner]` result: `u32` (must be below `partition_count`) or `Result<u32, E>`.
#[diagnostic::on_unimplemented(
    message = "a `#[partitioner]` function returns `u32` or `Result<u32, E>` with \
               `E: Display`, not `{Self}`"
)]
pub trait IntoPartitionOutcome {
    /// The partition, or the error message.
    fn into_partition_outcome(self) -> Result<u32, String>;
}

impl IntoPartitionOutcome for u32 {
    fn into_partition_outcome(self) -> Result<u32, String> {
        Ok(self)
    }
}

impl<E: Display> IntoPartitionOutcome for Result<u32, E> {
    fn into_partition_outcome(self) -> Result<u32, String> {
        self.map_err(|error| error.to_string())
    }
}

/// What a `group_by` function returns: the group key (`String`, `Vec<u8>`, `&str`, `&[u8]`),
/// `Option` of one (`None`: the record is not aggregated), or `Result<K, E>` of one.
#[diagnostic::on_unimplemented(
    message = "a `group_by` function returns a key (`String`, `Vec<u8>`, `&str`, `&[u8]`), \
               `Option<K>` or `Result<K, E>` with `E: Display`, not `{Self}`"
)]
pub trait IntoGroupOutcome {
    /// `Ok(Some(key))`, `Ok(None)` to leave the record out, or the error message.
    fn into_group_outcome(self) -> Result<Option<Vec<u8>>, String>;
}

macro_rules! group_key {
    ($($key:ty),*) => {$(
        impl IntoGroupOutcome for $key {
            fn into_group_outcome(self) -> Result<Option<Vec<u8>>, String> {
                Ok(Some(AsRef::<[u8]>::as_ref(&self).to_vec()))
            }
        }
    )*};
}
group_key!(String, Vec<u8>, &str, &[u8]);

impl<K: AsRef<[u8]>> IntoGroupOutcome for Option<K> {
    fn into_group_outcome(self) -> Result<Option<Vec<u8>>, String> {
        Ok(self.map(|key| key.as_ref().to_vec()))
    }
}

impl<K: AsRef<[u8]>, E: Display> IntoGroupOutcome for Result<K, E> {
    fn into_group_outcome(self) -> Result<Option<Vec<u8>>, String> {
        self.map(|key| Some(key.as_ref().to_vec()))
            .map_err(|error| error.to_string())
    }
}

/// What an `#[aggregate]` fold returns: `()` or `Result<(), E>`. An `Err` fails the record
/// (the host then re-runs the batch's other records from the old states).
#[diagnostic::on_unimplemented(
    message = "an `#[aggregate]` function returns `()` or `Result<(), E>` with `E: Display`, \
               not `{Self}`"
)]
pub trait IntoFoldOutcome {
    /// `Ok(())`, or the error message.
    fn into_fold_outcome(self) -> Result<(), String>;
}

impl IntoFoldOutcome for () {
    fn into_fold_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> IntoFoldOutcome for Result<(), E> {
    fn into_fold_outcome(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// What a `#[join]` function returns: [`OutputRecord`], `Option<OutputRecord>` (`None`
/// drops the pair: an inner join's miss), `Vec<OutputRecord>`, or a `Result` of one.
#[diagnostic::on_unimplemented(
    message = "a `#[join]` function returns `OutputRecord`, `Option<OutputRecord>`, \
               `Vec<OutputRecord>` or a `Result` of one with `E: Display`, not `{Self}`"
)]
pub trait IntoJoinOutcome {
    /// The output records (none drops the pair), or the error message.
    fn into_join_outcome(self) -> Result<Vec<OutputRecord>, String>;
}

impl IntoJoinOutcome for OutputRecord {
    fn into_join_outcome(self) -> Result<Vec<OutputRecord>, String> {
        Ok(vec![self])
    }
}

impl IntoJoinOutcome for Option<OutputRecord> {
    fn into_join_outcome(self) -> Result<Vec<OutputRecord>, String> {
        Ok(self.into_iter().collect())
    }
}

impl IntoJoinOutcome for Vec<OutputRecord> {
    fn into_join_outcome(self) -> Result<Vec<OutputRecord>, String> {
        Ok(self)
    }
}

impl<E: Display> IntoJoinOutcome for Result<OutputRecord, E> {
    fn into_join_outcome(self) -> Result<Vec<OutputRecord>, String> {
        self.map(|record| vec![record])
            .map_err(|error| error.to_string())
    }
}

impl<E: Display> IntoJoinOutcome for Result<Option<OutputRecord>, E> {
    fn into_join_outcome(self) -> Result<Vec<OutputRecord>, String> {
        self.map(|record| record.into_iter().collect())
            .map_err(|error| error.to_string())
    }
}

impl<E: Display> IntoJoinOutcome for Result<Vec<OutputRecord>, E> {
    fn into_join_outcome(self) -> Result<Vec<OutputRecord>, String> {
        self.map_err(|error| error.to_string())
    }
}

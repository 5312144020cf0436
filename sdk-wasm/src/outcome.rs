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

//! Isolating the failing records of a batch whose plug-in call failed (trap, fuel, memory,
//! malformed output): halves until each failing call is one record. Fuel is proportional to
//! the records in a call, so this costs about log2 of the batch's full budgets.

use std::sync::Arc;

use crate::wasm::batch::OpenedBatch;
use crate::wasm::{Outcome, Plugin};

/// Runs `range` in halves until each failing call is a single record; those records get an
/// `Error` outcome with the failure, the rest their real outcomes.
pub(super) fn bisect<'a>(
    opened: &'a OpenedBatch,
    plugin: &'a Arc<Plugin>,
    range: std::ops::Range<usize>,
    partition: u32,
    partition_count: u32,
) -> std::pin::Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'a>> {
    Box::pin(async move {
        if range.len() <= 1 {
            return match opened
                .run(plugin, range.clone(), partition, partition_count)
                .await
            {
                Ok(outcomes) => outcomes,
                Err(error) => vec![Outcome::Error(error.to_string()); range.len()],
            };
        }
        let middle = range.start + range.len() / 2;
        let mut outcomes = Vec::with_capacity(range.len());
        for half in [range.start..middle, middle..range.end] {
            match opened
                .run(plugin, half.clone(), partition, partition_count)
                .await
            {
                Ok(part) => outcomes.extend(part),
                Err(_) => {
                    outcomes.extend(bisect(opened, plugin, half, partition, partition_count).await)
                }
            }
        }
        outcomes
    })
}

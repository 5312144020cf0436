//! Stateful stream processing (issue 17, docs/STREAMS.md): the pure core of the host side.
//!
//! Owns, without IO, tokio, wasmtime or a clock (time is passed in):
//! - [`changelog`]: the changelog's entries (state, outbox, commit position), their bounded
//!   codecs, and [`changelog::CommitBatch`], the one batch a chunk commits;
//! - [`restore`]: rebuilding a task's store, position and pending outbox from its changelog;
//! - [`store`]: the in-memory state with byte accounting and all-or-nothing chunks;
//! - [`window`]: window assignment, the watermark, lateness, closing and expiry, sessions;
//! - [`join`]: the stream-stream join buffer and the stream-table join's table, kept in the
//!   store so they are committed and restored like any state;
//! - [`dedup`]: stage 2's source-offset deduplication of the repartition topic.
//!
//! Does not own: running the guest (`wasm`), reading inputs, appending the batch or
//! forwarding the outbox (the transform task that drives these pieces).

pub mod changelog;
pub mod dedup;
pub mod join;
pub mod restore;
pub mod store;
pub mod window;

#[cfg(test)]
mod model_tests;

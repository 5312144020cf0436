//! The guest SDK for Ledge WASM plug-ins: one attribute on one function makes a module.
//!
//! ```standalone_crate
//! use ledge_wasm_sdk::{Record, filter};
//!
//! #[filter]
//! fn high_value_orders(record: &Record<'_>, threshold: f64) -> Result<bool, String> {
//!     let value = record.value_str().ok_or("value is null or not UTF-8")?;
//!     let amount: f64 = value.parse().map_err(|e| format!("value is not a number: {e}"))?;
//!     Ok(amount > threshold)
//! }
//!
//! // Natively, in a test: the same bytes the node would exchange with the module.
//! use ledge_wasm_sdk::OutputRecord;
//! use ledge_wasm_sdk::testing::{Outcome, TestPlugin};
//!
//! let mut plugin = TestPlugin::<high_value_orders>::init(&[("threshold", "100")]).unwrap();
//! let outcomes = plugin.run(&[
//!     OutputRecord::new().with_value("150"),
//!     OutputRecord::new().with_value("50"),
//!     OutputRecord::new().with_value("lots"),
//! ]);
//! assert_eq!(outcomes[..2], [Outcome::Keep, Outcome::Drop]);
//! assert_eq!(outcomes[2], Outcome::Error("value is not a number: invalid float literal".into()));
//! assert_eq!(
//!     TestPlugin::<high_value_orders>::init(&[]).err().unwrap(),
//!     "missing parameter `threshold`",
//! );
//! ```
//!
//! The attributes are [`filter`], [`map`], [`filter_map`], [`flat_map`] and [`partitioner`],
//! and the stateful [`aggregate`] and [`join`] (docs/STREAMS.md), whose state the node keeps:
//!
//! ```standalone_crate
//! use std::collections::BTreeMap;
//! use ledge_wasm_sdk::{OutputRecord, Record, aggregate};
//! use ledge_wasm_sdk::testing::TestPlugin;
//!
//! /// Orders per customer; the state is a `u64`, stored as JSON.
//! #[aggregate(group_by = customer)]
//! fn order_counts(count: &mut u64, _order: &Record<'_>) {
//!     *count += 1;
//! }
//!
//! /// The group key: the value's text before the first `:`.
//! fn customer(order: &Record<'_>) -> Result<String, String> {
//!     let value = order.value_str().ok_or("value is not text")?;
//!     let (customer, _) = value.split_once(':').ok_or("no `:` in the value")?;
//!     Ok(customer.to_owned())
//! }
//!
//! let mut plugin = TestPlugin::<order_counts>::init(&[]).unwrap();
//! let mut table = BTreeMap::new(); // group key -> state JSON, as the node keeps it
//! let orders = ["ada:1", "bob:2", "ada:3"].map(|value| OutputRecord::new().with_value(value));
//! plugin.fold_into(&mut table, &orders).unwrap();
//! assert_eq!(table[&b"ada"[..]], b"2");
//! assert_eq!(TestPlugin::<order_counts>::state_schema(), "u64");
//! ```
//!
//! ```standalone_crate
//! use ledge_wasm_sdk::{OutputRecord, Record, join};
//! use ledge_wasm_sdk::testing::{Outcome, TestPlugin};
//!
//! /// Stream-table left join: `customer` is `None` when the table has no record for the key.
//! #[join]
//! fn tag_orders(order: &Record<'_>, customer: Option<&Record<'_>>) -> OutputRecord {
//!     let tier = customer.and_then(Record::value_str).unwrap_or("unknown");
//!     OutputRecord::from(order).with_header("tier", tier)
//! }
//!
//! let mut plugin = TestPlugin::<tag_orders>::init(&[]).unwrap();
//! let order = OutputRecord::new().with_value("o1");
//! assert_eq!(
//!     plugin.join_one(order.clone(), None),
//!     Outcome::Records(vec![order.with_header("tier", "unknown")]),
//! );
//! ```
//! The function's first parameter is the input [`Record`], a zero-copy view into the batch the
//! host wrote into the module's memory; a partitioner's second is `partition_count: u32`.
//! Every further parameter is a deployment parameter (`--param threshold=1000`), bound by name
//! and parsed with `FromStr` once, in `ledge_init`; `Option<T>` makes one optional, and `&str`
//! or `&T` borrows the parsed value instead of cloning it per record. A missing, unparsable or
//! unknown parameter fails the deployment with a message naming it.
//!
//! What each kind returns is the plain value or a `Result` of it (see [`IntoFilterOutcome`]
//! and its siblings); an `Err` fails that one record, and its `Display` text reaches the
//! operator through the deployment's error policy (dead-letter, skip or stop). A map returns
//! an [`OutputRecord`], usually `OutputRecord::from(record)` with some `with_*` changes.
//!
//! The attribute writes the module's exports (docs/WASM-ABI.md): `ledge_abi_version`,
//! `ledge_alloc`, `ledge_init`, `ledge_<kind>` and `ledge_panic_message`. So a crate holds one
//! plug-in, built as a `cdylib` for `wasm32-unknown-unknown`. [`testing::TestPlugin`] runs it
//! natively in unit tests through the same bytes the host exchanges with the module.
//!
//! The generated code names this crate `::ledge_wasm_sdk`: depend on it under that name.
#![warn(missing_docs)]

mod encode;
mod module_check;
mod outcome;
mod output;
mod params;
mod record;
mod runtime;
mod stateful;
pub mod testing;

pub use encode::ERROR_MESSAGE_BYTES_MAX;
/// Kafka's default key placement, bit for bit (the same code as the Ledge client's), for
/// partitioner plug-ins that place some keys as any Kafka client would.
pub use ledge_protocol::partitioner::{murmur2, partition_for_key};
/// The ABI's numbers and shared layouts, the same module the node's host links
/// (`ledge_protocol::wasm_abi`).
pub use ledge_protocol::wasm_abi as abi;
pub use ledge_protocol::wasm_abi::PluginKind;
pub use ledge_wasm_sdk_macros::{aggregate, filter, filter_map, flat_map, join, map, partitioner};
pub use outcome::{
    IntoFilterMapOutcome, IntoFilterOutcome, IntoFlatMapOutcome, IntoFoldOutcome, IntoGroupOutcome,
    IntoJoinOutcome, IntoMapOutcome, IntoPartitionOutcome,
};
pub use output::OutputRecord;
pub use params::InitError;
pub use record::{Header, Headers, Record};
pub use runtime::PANIC_MESSAGE_BYTES_MAX;

/// What the attribute macros expand to; not a public API, and it may change at any time.
#[doc(hidden)]
pub mod __private {
    pub use crate::encode::Entries;
    pub use crate::params::{InitError, Params};
    pub use crate::runtime::{Plugin, abi_version, alloc, init, panic_message, run};
    pub use crate::stateful::{
        AggregatePlugin, JoinPlugin, aggregate, join, merge, state_check, state_schema,
    };
    pub use serde_json;
}

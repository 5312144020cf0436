//! Interactive queries of a stateful transform's table (docs/STREAMS.md): `ledge table get`
//! and `ledge table scan` through the native TableGet (51) and TableScan (52) requests,
//! answered from the state of the node running the transform, as last committed.

use bytes::Bytes;
use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};

use super::{Admin, unexpected};
use crate::cluster::failover::RequestKind;
use crate::error::AdminError;

/// One entry of a table ([`Admin::table_scan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// The group key.
    pub key: Bytes,
    /// Its state (the module's JSON).
    pub value: Bytes,
    /// The state partition holding it.
    pub partition: u32,
    /// A windowed table's window of the entry: (start, end), ms since the epoch.
    pub window: Option<(i64, i64)>,
}

/// One key's answer ([`Admin::table_get_entries`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableGet {
    /// An unwindowed table: the key's state, if it has one.
    pub value: Option<Bytes>,
    /// A windowed table: the key's windows with their states, in window order.
    pub windows: Vec<TableEntry>,
}

fn entry(entry: wire::TableEntry) -> TableEntry {
    TableEntry {
        key: entry.key,
        value: entry.value,
        partition: entry.partition,
        window: entry.window.map(|window| (window.start_ms, window.end_ms)),
    }
}

/// A scan's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableScan {
    /// Entries in key order.
    pub entries: Vec<TableEntry>,
    /// More entries matched than were returned (the limit, or the node's
    /// `transforms.table_scan_entries_max`).
    pub truncated: bool,
}

fn refused(name: &str, code: ErrorCode, message: String) -> AdminError {
    AdminError::Transform {
        name: name.to_owned(),
        code,
        message,
    }
}

impl Admin {
    /// The state of `key` in the table of stateful transform `name` (`None`: no state; for
    /// a windowed table, see [`Self::table_get_entries`]).
    pub async fn table_get(&self, name: &str, key: &[u8]) -> Result<Option<Bytes>, AdminError> {
        Ok(self.table_get_entries(name, key).await?.value)
    }

    /// The state of `key` in the table of stateful transform `name`: its value, or for a
    /// windowed table its windows.
    pub async fn table_get_entries(&self, name: &str, key: &[u8]) -> Result<TableGet, AdminError> {
        let request = Request::TableGet(wire::TableGetRequest {
            name: name.to_owned(),
            key: Bytes::copy_from_slice(key),
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Read, &request)
            .await?
        {
            Response::TableGet(response) => response,
            other => return Err(unexpected(ApiKey::TableGet, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(refused(name, response.error, response.message));
        }
        Ok(TableGet {
            value: response.found.then_some(response.value),
            windows: response.windows.into_iter().map(entry).collect(),
        })
    }

    /// The entries of the table of stateful transform `name` whose keys start with
    /// `prefix`, in key order, at most `limit` (0: the node's limit).
    pub async fn table_scan(
        &self,
        name: &str,
        prefix: &[u8],
        limit: u32,
    ) -> Result<TableScan, AdminError> {
        let request = Request::TableScan(wire::TableScanRequest {
            name: name.to_owned(),
            prefix: Bytes::copy_from_slice(prefix),
            limit,
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Read, &request)
            .await?
        {
            Response::TableScan(response) => response,
            other => return Err(unexpected(ApiKey::TableScan, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(refused(name, response.error, response.message));
        }
        Ok(TableScan {
            entries: response.entries.into_iter().map(entry).collect(),
            truncated: response.truncated,
        })
    }
}

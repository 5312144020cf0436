//! The input side of a batch call: the zero-copy [`Record`] view a plug-in function receives.
//!
//! The host writes one input batch into guest memory (docs/WASM-ABI.md, "Input batch"): a
//! fixed header, then Kafka v2 records back to back. `ledge_protocol::wasm_abi` reads both
//! (the header layout the host writes and the record parser the node uses for Kafka batches,
//! one copy for both sides); this file wraps each [`RecordView`] it yields in the SDK's
//! accessors. Every record is validated whole (headers included) before it is handed out, so
//! the accessors on [`Record`] and the [`Headers`] iterator cannot fail.

use std::fmt;

use ledge_protocol::{HeaderIter, HeaderView, RecordView};

/// One input record, borrowed from the batch the host wrote into the module's memory.
///
/// Keys, values and header values may be null (`None`), which Kafka distinguishes from empty.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    view: RecordView<'a>,
    partition: u32,
}

impl<'a> Record<'a> {
    /// A record of `partition`, as read from the input batch.
    pub(crate) fn new(view: RecordView<'a>, partition: u32) -> Self {
        Self { view, partition }
    }

    /// The key, or `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.view.key
    }

    /// The key as UTF-8, or `None` if it is null or not valid UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        self.view.key.and_then(|key| std::str::from_utf8(key).ok())
    }

    /// The value, or `None` for a null value (a tombstone on compacted topics).
    pub fn value(&self) -> Option<&'a [u8]> {
        self.view.value
    }

    /// The value as UTF-8, or `None` if it is null or not valid UTF-8. Use
    /// [`std::str::from_utf8`] on [`Record::value`] to tell the two apart.
    pub fn value_str(&self) -> Option<&'a str> {
        self.view
            .value
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The headers in the order the producer wrote them; a key may repeat, as Kafka allows.
    pub fn headers(&self) -> Headers<'a> {
        Headers(self.view.headers())
    }

    /// The last header named `key` (Kafka's `Headers.lastHeader`), if any.
    pub fn header(&self, key: &str) -> Option<Header<'a>> {
        self.headers().filter(|header| header.key() == key).last()
    }

    /// The record's timestamp in milliseconds since the Unix epoch (the batch's base timestamp
    /// plus the record's delta; for `LogAppendTime` topics, the append time).
    pub fn timestamp(&self) -> i64 {
        self.view.timestamp
    }

    /// The record's offset: the batch's base offset plus the record's delta (0-based deltas
    /// on produce, where offsets are not assigned yet).
    pub fn offset(&self) -> i64 {
        self.view.offset
    }

    /// The partition the record comes from (0 on produce, see docs/WASM-ABI.md).
    pub fn partition(&self) -> u32 {
        self.partition
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.view.offset)
            .field("timestamp", &self.view.timestamp)
            .field("key", &self.view.key.map(String::from_utf8_lossy))
            .field("value", &self.view.value.map(String::from_utf8_lossy))
            .field("headers", &self.headers().collect::<Vec<_>>())
            .finish()
    }
}

/// One record header: a UTF-8 key and a value that may be null.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header<'a>(HeaderView<'a>);

impl<'a> Header<'a> {
    /// The header's key.
    pub fn key(&self) -> &'a str {
        self.0.key
    }

    /// The header's value, or `None` for a null value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.0.value
    }

    /// The value as UTF-8, or `None` if it is null or not valid UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        self.0
            .value
            .and_then(|value| std::str::from_utf8(value).ok())
    }
}

impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Header")
            .field(&self.0.key)
            .field(&self.0.value.map(String::from_utf8_lossy))
            .finish()
    }
}

/// The headers of a [`Record`], in wire order.
#[derive(Clone, Debug)]
pub struct Headers<'a>(HeaderIter<'a>);

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        self.0.next().map(Header)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Headers<'_> {}

#[cfg(test)]
mod tests;

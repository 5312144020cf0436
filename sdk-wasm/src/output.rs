//! [`OutputRecord`]: an owned record that a map, filter_map or flat_map returns.

use crate::record::Record;

/// An owned record: what a `#[map]`, `#[filter_map]` or `#[flat_map]` returns, and what the
/// [`testing`](crate::testing) helpers take as input.
///
/// Start from the input with `OutputRecord::from(record)` (key, value, headers and timestamp
/// carried over) and change what you need with the `with_*` methods, or build one from
/// [`OutputRecord::new`]. The timestamp is carried over as `None`, "the input record's", which
/// the ABI encodes as `-1`; the host then keeps the original, exactly as a copy would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputRecord {
    /// The key; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Vec<u8>>,
    /// The headers in order; a key may repeat, and a `None` value is a null header value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The timestamp in milliseconds since the Unix epoch; `None` keeps the input record's.
    /// The ABI encodes `None` as `-1`, so `Some(-1)` also keeps it.
    pub timestamp: Option<i64>,
}

impl OutputRecord {
    /// A record with a null key, a null value, no headers and the input's timestamp.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Makes the key null.
    #[must_use]
    pub fn with_null_key(mut self) -> Self {
        self.key = None;
        self
    }

    /// Sets the value.
    #[must_use]
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Makes the value null (a tombstone on compacted topics).
    #[must_use]
    pub fn with_null_value(mut self) -> Self {
        self.value = None;
        self
    }

    /// Appends a header (earlier headers with the same key stay, as Kafka allows).
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Appends a header with a null value.
    #[must_use]
    pub fn with_null_header(mut self, key: impl Into<String>) -> Self {
        self.headers.push((key.into(), None));
        self
    }

    /// Removes every header named `key`.
    #[must_use]
    pub fn without_header(mut self, key: &str) -> Self {
        self.headers.retain(|(name, _)| name != key);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

impl From<&Record<'_>> for OutputRecord {
    /// A copy of the input record: key, value and headers, and `timestamp: None`, which keeps
    /// the input record's timestamp.
    fn from(record: &Record<'_>) -> Self {
        Self {
            key: record.key().map(<[u8]>::to_vec),
            value: record.value().map(<[u8]>::to_vec),
            headers: record
                .headers()
                .map(|header| (header.key().to_owned(), header.value().map(<[u8]>::to_vec)))
                .collect(),
            timestamp: None,
        }
    }
}

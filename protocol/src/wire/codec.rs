//! The primitive encoding of Ledge's native protocol (big-endian, length-prefixed).
//!
//! | type | encoding |
//! |---|---|
//! | `u8`, `i8`, `u16`, `i16`, `u32`, `i32`, `u64`, `i64` | fixed width, big-endian |
//! | `bool` | one byte, 0 or 1 (anything else is an error) |
//! | `String` | `u16` length + UTF-8 bytes |
//! | `Bytes` | `u32` length + bytes (decoded as a zero-copy slice of the frame) |
//! | `Option<T>` | `u8` 0 (none) or 1 followed by `T` |
//! | `Vec<T>` | `u32` count + elements |
//!
//! Decoding never trusts a length or count: each is checked against the bytes that remain,
//! so a hostile frame cannot make the decoder allocate more than the frame's own size.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame ended in the middle of a field.
    #[error("frame truncated: {field} needs {needed} bytes, {available} remain")]
    Truncated {
        /// What was being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// A string is not UTF-8.
    #[error("string is not valid UTF-8")]
    NotUtf8,
    /// A boolean or enum byte has a value no version defines.
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i64,
    },
    /// A count claims more elements than the remaining bytes could hold.
    #[error("{field} claims {count} elements but only {available} bytes remain")]
    CountTooLarge {
        /// The field.
        field: &'static str,
        /// The count claimed.
        count: u32,
        /// Bytes left in the frame.
        available: usize,
    },
    /// Bytes are left after the last field.
    #[error("{0} unexpected bytes after the end of the message")]
    TrailingBytes(usize),
}

/// Payloads at least this large are sent as their own chunk instead of being copied into
/// the frame buffer (record batches on the produce and fetch paths).
pub const ZERO_COPY_BYTES_MIN: usize = 4096;

/// Builds a frame as a list of chunks: small fields are copied into a buffer, large
/// payloads ([`Bytes`] of at least [`ZERO_COPY_BYTES_MIN`]) are referenced, not copied, so
/// a fetch response's record batches go from the page-cache read to the socket without
/// another copy. Derefs to the current `BytesMut` for the small fields.
#[derive(Debug, Default)]
pub struct FrameWriter {
    chunks: Vec<Bytes>,
    current: BytesMut,
    len: usize,
}

impl FrameWriter {
    /// An empty frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a payload, by reference when it is large.
    pub fn put_payload(&mut self, payload: &Bytes) {
        if payload.len() >= ZERO_COPY_BYTES_MIN {
            if !self.current.is_empty() {
                let small = self.current.split().freeze();
                self.len += small.len();
                self.chunks.push(small);
            }
            self.len += payload.len();
            self.chunks.push(payload.clone());
        } else {
            self.current.put_slice(payload);
        }
    }

    /// The frame as chunks, to be written in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.freeze());
        }
        self.chunks
    }

    /// The frame as one contiguous buffer (copies the large payloads).
    pub fn into_bytes(self) -> Bytes {
        let mut chunks = self.into_chunks();
        match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut whole = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                for chunk in chunks {
                    whole.put_slice(&chunk);
                }
                whole.freeze()
            }
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len + self.current.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::ops::Deref for FrameWriter {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.current
    }
}

impl std::ops::DerefMut for FrameWriter {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.current
    }
}

/// A cursor over a frame that hands out zero-copy slices.
#[derive(Debug)]
pub struct Reader {
    bytes: Bytes,
}

impl Reader {
    /// Reads from `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), WireError> {
        match self.bytes.len() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes(extra)),
        }
    }

    fn need(&self, field: &'static str, needed: usize) -> Result<(), WireError> {
        if self.bytes.len() < needed {
            return Err(WireError::Truncated {
                field,
                needed,
                available: self.bytes.len(),
            });
        }
        Ok(())
    }

    /// Takes `len` bytes without copying.
    pub fn take(&mut self, field: &'static str, len: usize) -> Result<Bytes, WireError> {
        self.need(field, len)?;
        Ok(self.bytes.split_to(len))
    }

    /// Checks that `count` elements of at least `element_bytes_min` bytes each can fit.
    pub fn check_count(
        &self,
        field: &'static str,
        count: u32,
        element_bytes_min: usize,
    ) -> Result<(), WireError> {
        let needed = (count as usize).saturating_mul(element_bytes_min.max(1));
        if needed > self.bytes.len() {
            return Err(WireError::CountTooLarge {
                field,
                count,
                available: self.bytes.len(),
            });
        }
        Ok(())
    }
}

/// A value with a wire encoding.
pub trait Wire: Sized {
    /// The fewest bytes one encoded value takes (bounds counts before allocating).
    const BYTES_MIN: usize;
    /// Appends the encoding.
    fn encode(&self, out: &mut FrameWriter);
    /// Reads one value.
    fn decode(input: &mut Reader) -> Result<Self, WireError>;
}

macro_rules! wire_integer {
    ($($ty:ty => $put:ident, $get:ident;)*) => {$(
        impl Wire for $ty {
            const BYTES_MIN: usize = std::mem::size_of::<$ty>();
            fn encode(&self, out: &mut FrameWriter) {
                out.$put(*self);
            }
            fn decode(input: &mut Reader) -> Result<Self, WireError> {
                input.need(stringify!($ty), std::mem::size_of::<$ty>())?;
                Ok(input.bytes.$get())
            }
        }
    )*};
}

wire_integer! {
    u8 => put_u8, get_u8;
    i8 => put_i8, get_i8;
    u16 => put_u16, get_u16;
    i16 => put_i16, get_i16;
    u32 => put_u32, get_u32;
    i32 => put_i32, get_i32;
    u64 => put_u64, get_u64;
    i64 => put_i64, get_i64;
}

impl Wire for bool {
    const BYTES_MIN: usize = 1;
    fn encode(&self, out: &mut FrameWriter) {
        out.put_u8(u8::from(*self));
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        match u8::decode(input)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(WireError::InvalidValue {
                field: "bool",
                value: i64::from(value),
            }),
        }
    }
}

impl Wire for String {
    const BYTES_MIN: usize = 2;
    fn encode(&self, out: &mut FrameWriter) {
        // Strings on this protocol are names and messages; longer ones are cut at a
        // character boundary rather than corrupting the frame.
        let mut end = self.len().min(usize::from(u16::MAX));
        while !self.is_char_boundary(end) {
            end -= 1;
        }
        out.put_u16(end as u16);
        out.put_slice(self.as_bytes().get(..end).unwrap_or_default());
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        let len = u16::decode(input)?;
        let bytes = input.take("string", usize::from(len))?;
        Self::from_utf8(bytes.to_vec()).map_err(|_| WireError::NotUtf8)
    }
}

impl Wire for Bytes {
    const BYTES_MIN: usize = 4;
    fn encode(&self, out: &mut FrameWriter) {
        let len = u32::try_from(self.len())
            .expect("payloads are bounded by the frame limit, far below 4 GiB");
        out.put_u32(len);
        out.put_payload(self);
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        let len = u32::decode(input)?;
        input.take("bytes", len as usize)
    }
}

impl<T: Wire> Wire for Option<T> {
    const BYTES_MIN: usize = 1;
    fn encode(&self, out: &mut FrameWriter) {
        match self {
            None => out.put_u8(0),
            Some(value) => {
                out.put_u8(1);
                value.encode(out);
            }
        }
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        match u8::decode(input)? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(input)?)),
            value => Err(WireError::InvalidValue {
                field: "option",
                value: i64::from(value),
            }),
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    const BYTES_MIN: usize = 4;
    fn encode(&self, out: &mut FrameWriter) {
        let count = u32::try_from(self.len()).expect("arrays are bounded by the frame limit");
        out.put_u32(count);
        for item in self {
            item.encode(out);
        }
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        let count = u32::decode(input)?;
        input.check_count("array", count, T::BYTES_MIN)?;
        let mut items = Self::with_capacity(count as usize);
        for _ in 0..count {
            items.push(T::decode(input)?);
        }
        Ok(items)
    }
}

/// Declares a message struct and its field-by-field wire encoding, in field order.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty ),*
        }

        impl $crate::wire::codec::Wire for $name {
            const BYTES_MIN: usize = 0 $( + <$ty as $crate::wire::codec::Wire>::BYTES_MIN )*;
            #[allow(unused_variables)]
            fn encode(&self, out: &mut $crate::wire::codec::FrameWriter) {
                $( $crate::wire::codec::Wire::encode(&self.$field, out); )*
            }
            #[allow(unused_variables)]
            fn decode(input: &mut $crate::wire::codec::Reader) -> Result<Self, $crate::wire::codec::WireError> {
                Ok(Self { $( $field: $crate::wire::codec::Wire::decode(input)? ),* })
            }
        }
    };
}

pub(crate) use wire_struct;

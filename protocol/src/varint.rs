//! Kafka's zigzag varints (the protobuf encoding), used by every field inside a v2 record.
//!
//! Reads are strict: a varint may take at most 5 bytes and a varlong 10, and the last byte may
//! not carry bits beyond the integer's width. Java's `ByteUtils.readVarint` enforces the byte
//! count but drops excess bits silently; no conforming encoder emits them, so rejecting them
//! costs no compatibility and keeps one value per encoding.
//!
//! Public for the guest SDK, whose test helpers write records as the host does.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended before the last byte of the varint.
    Truncated,
    /// Too many bytes, or bits beyond the integer's width.
    Overflow,
}

const VARINT_BYTES_MAX: u32 = 5;
const VARLONG_BYTES_MAX: u32 = 10;

/// Reads a zigzag varint (`i32`) from the front of `input` and advances it.
pub fn read_varint(input: &mut &[u8]) -> Result<i32, VarintError> {
    let raw = read_unsigned(input, VARINT_BYTES_MAX)?;
    let raw = u32::try_from(raw).map_err(|_| VarintError::Overflow)?;
    // Zigzag: the low bit is the sign, so small negative numbers stay short.
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (`i64`) from the front of `input` and advances it.
pub fn read_varlong(input: &mut &[u8]) -> Result<i64, VarintError> {
    let raw = read_unsigned(input, VARLONG_BYTES_MAX)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Appends `value` as a zigzag varint.
pub fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_unsigned(out, u64::from(zigzag32(value)));
}

/// Appends `value` as a zigzag varlong.
pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    write_unsigned(out, zigzag64(value));
}

/// How many bytes [`write_varint`] appends for `value`.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag32(value)))
}

/// How many bytes [`write_varlong`] appends for `value`.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn read_unsigned(input: &mut &[u8], bytes_max: u32) -> Result<u64, VarintError> {
    let mut value = 0u64;
    for index in 0..bytes_max {
        let (&byte, rest) = input.split_first().ok_or(VarintError::Truncated)?;
        *input = rest;
        let chunk = u64::from(byte & 0x7f);
        let shift = 7 * index;
        // Bits that would fall off the top of a u64 mean the encoder meant a larger integer.
        if shift > 0 && chunk >> (64 - shift) != 0 {
            return Err(VarintError::Overflow);
        }
        value |= chunk << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(VarintError::Overflow)
}

fn write_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    // One byte per started group of 7 significant bits, and at least one byte for zero.
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests;

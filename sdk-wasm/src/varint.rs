//! Kafka's zigzag varints, read strictly and written for test batches.
//!
//! The same rules as `ledge-protocol`'s reader (which the SDK cannot link): a varint takes at
//! most 5 bytes and a varlong 10, and the last byte may not carry bits beyond the integer's
//! width, so each value has one encoding.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended before the last byte of the varint.
    Truncated,
    /// Too many bytes, or bits beyond the integer's width.
    Overflow,
}

const VARINT_BYTES_MAX: u32 = 5;
const VARLONG_BYTES_MAX: u32 = 10;

/// Reads a zigzag varint (`i32`) from the front of `input` and advances it.
pub(crate) fn read_varint(input: &mut &[u8]) -> Result<i32, VarintError> {
    let raw = read_unsigned(input, VARINT_BYTES_MAX)?;
    let raw = u32::try_from(raw).map_err(|_| VarintError::Overflow)?;
    // Zigzag: the low bit is the sign, so small negative numbers stay short.
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (`i64`) from the front of `input` and advances it.
pub(crate) fn read_varlong(input: &mut &[u8]) -> Result<i64, VarintError> {
    let raw = read_unsigned(input, VARLONG_BYTES_MAX)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Appends `value` as a zigzag varint.
pub(crate) fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_unsigned(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends `value` as a zigzag varlong.
pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    write_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
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
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests;

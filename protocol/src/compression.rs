//! Kafka's batch codecs: compress a records blob, and decompress one within a byte limit.
//!
//! Owns: each codec's container format as Kafka clients write it, and the bound on
//! decompressed size. Does not own: which codec a batch uses (its `attributes`) or the records
//! in the blob (`record.rs`).
//!
//! Formats, following Java Kafka's `CompressionType`: gzip is a gzip stream (several members
//! allowed, as `GZIPInputStream` reads them); snappy is snappy-java's xerial framing (a 16-byte
//! header, then blocks with a 4-byte big-endian length), and raw snappy is accepted too, as
//! snappy-java falls back to it when the header is missing; LZ4 is the LZ4 frame format with
//! independent 64 KiB blocks, as `KafkaLZ4BlockOutputStream` writes it; zstd is a zstd frame.
//!
//! Every decoder stops one byte past the limit, so a small input that claims or expands to a
//! huge output (a "zip bomb") costs at most `limit + 1` bytes of output buffer.
//!
//! Each codec is a cargo feature (`gzip`, `snappy`, `lz4`, `zstd`; all four under the default
//! `compression`), so the crate builds for `wasm32-unknown-unknown`, where C zstd does not: the
//! guest SDK links it with `default-features = false`. A batch that needs a codec this build
//! lacks is refused with [`CodecError::NotBuiltIn`], never a panic.

use std::io::{self, Read};

#[cfg(feature = "snappy")]
use bytes::{Buf, BufMut};

use crate::batch::Compression;

/// Why a blob could not be compressed.
#[derive(Debug)]
pub(crate) enum CompressError {
    /// The codec failed (for zstd, possibly an unsupported level).
    Codec(io::Error),
    /// This build has no such codec (a cargo feature of `ledge-protocol` is off).
    #[cfg_attr(
        all(
            feature = "gzip",
            feature = "snappy",
            feature = "lz4",
            feature = "zstd"
        ),
        expect(dead_code, reason = "every codec is built in")
    )]
    NotBuiltIn,
}

impl From<io::Error> for CompressError {
    fn from(error: io::Error) -> Self {
        Self::Codec(error)
    }
}

/// Why a blob could not be decompressed.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// The output would exceed the limit.
    TooLarge,
    /// The codec rejected the input.
    Corrupt(io::Error),
    /// This build has no such codec (a cargo feature of `ledge-protocol` is off).
    #[cfg_attr(
        all(
            feature = "gzip",
            feature = "snappy",
            feature = "lz4",
            feature = "zstd"
        ),
        expect(dead_code, reason = "every codec is built in")
    )]
    NotBuiltIn,
}

impl From<io::Error> for DecompressError {
    fn from(error: io::Error) -> Self {
        Self::Corrupt(error)
    }
}

#[cfg(feature = "snappy")]
impl From<snap::Error> for DecompressError {
    fn from(error: snap::Error) -> Self {
        Self::Corrupt(error.into())
    }
}

/// snappy-java's stream header: `0x82 "SNAPPY" 0x00`, then a version and a compatible version.
#[cfg(feature = "snappy")]
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
#[cfg(feature = "snappy")]
const XERIAL_HEADER_BYTES: usize = 16;
/// The versions snappy-java writes; its reader requires the compatible version to be 1.
#[cfg(feature = "snappy")]
const XERIAL_VERSION: i32 = 1;
#[cfg(feature = "snappy")]
const XERIAL_VERSION_COMPATIBLE: i32 = 1;
/// snappy-java's default block size; Kafka does not change it.
#[cfg(feature = "snappy")]
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// The first output buffer, before doubling; a typical producer batch fits in it.
#[cfg(any(feature = "gzip", feature = "lz4", feature = "zstd"))]
const DECOMPRESS_CHUNK_BYTES: usize = 64 * 1024;

/// Appends `records` to `out`, compressed with `compression`.
pub(crate) fn compress(
    compression: Compression,
    records: &[u8],
    zstd_level: i32,
    out: &mut Vec<u8>,
) -> Result<(), CompressError> {
    // Unused when zstd is not built in.
    let _ = zstd_level;
    match compression {
        Compression::None => out.extend_from_slice(records),
        #[cfg(feature = "gzip")]
        Compression::Gzip => {
            use std::io::Write;
            // Level 6, as Java's `GZIPOutputStream` (Kafka's default `compression.gzip.level`).
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder.write_all(records)?;
            encoder.finish()?;
        }
        #[cfg(feature = "snappy")]
        Compression::Snappy => {
            out.extend_from_slice(&XERIAL_MAGIC);
            out.put_i32(XERIAL_VERSION);
            out.put_i32(XERIAL_VERSION_COMPATIBLE);
            let mut encoder = snap::raw::Encoder::new();
            for block in records.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block).map_err(io::Error::from)?;
                let length = u32::try_from(compressed.len())
                    .map_err(|_| io::Error::other("snappy block over 4 GiB"))?;
                out.put_u32(length);
                out.extend_from_slice(&compressed);
            }
        }
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
            use std::io::Write;
            // Independent 64 KiB blocks, as Kafka's Java codec writes them; its reader does not
            // support linked blocks.
            let frame_info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent);
            let mut encoder = FrameEncoder::with_frame_info(frame_info, out);
            encoder.write_all(records)?;
            encoder.finish().map_err(io::Error::from)?;
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            // The one-shot API records the content size in the frame, so readers can size
            // their window to the content rather than to the level's default.
            let compressed = zstd::bulk::compress(records, zstd_level)?;
            out.extend_from_slice(&compressed);
        }
        #[cfg(not(all(
            feature = "gzip",
            feature = "snappy",
            feature = "lz4",
            feature = "zstd"
        )))]
        _ => return Err(CompressError::NotBuiltIn),
    }
    Ok(())
}

/// Decompresses `compressed`, failing with [`DecompressError::TooLarge`] as soon as the output
/// would exceed `limit` bytes.
pub(crate) fn decompress(
    compression: Compression,
    compressed: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    match compression {
        Compression::None => {
            if compressed.len() > limit {
                return Err(DecompressError::TooLarge);
            }
            Ok(compressed.to_vec())
        }
        #[cfg(feature = "gzip")]
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(compressed), limit),
        #[cfg(feature = "snappy")]
        Compression::Snappy => {
            if compressed.starts_with(&XERIAL_MAGIC) {
                decompress_xerial(compressed, limit)
            } else {
                decompress_snappy_raw(compressed, limit)
            }
        }
        #[cfg(feature = "lz4")]
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(compressed), limit),
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            // zstd caps the window a frame may demand at 128 MiB (ZSTD_WINDOWLOG_LIMIT_DEFAULT),
            // which no Kafka producer exceeds. The window is reserved, not written: memory
            // actually touched follows the output, which `read_bounded` limits.
            let decoder = zstd::stream::read::Decoder::with_buffer(compressed)?;
            read_bounded(decoder, limit)
        }
        #[cfg(not(all(
            feature = "gzip",
            feature = "snappy",
            feature = "lz4",
            feature = "zstd"
        )))]
        _ => Err(DecompressError::NotBuiltIn),
    }
}

/// A reader that decompresses `compressed` as it is read, for the codecs whose Rust crates
/// stream (gzip, LZ4 frames, zstd); `None` for snappy (read whole by [`decompress`]) and for
/// uncompressed data and for codecs this build lacks (which [`decompress`] then refuses). The
/// caller bounds how much it reads.
pub(crate) fn streaming_reader<'a>(
    compression: Compression,
    compressed: &'a [u8],
) -> io::Result<Option<Box<dyn Read + 'a>>> {
    // Unused when no streaming codec is built in.
    let _ = compressed;
    Ok(match compression {
        #[cfg(feature = "gzip")]
        Compression::Gzip => Some(Box::new(flate2::read::MultiGzDecoder::new(compressed))),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => Some(Box::new(lz4_flex::frame::FrameDecoder::new(compressed))),
        // The same window bound as `decompress` (zstd's default window-log limit).
        #[cfg(feature = "zstd")]
        Compression::Zstd => Some(Box::new(zstd::stream::read::Decoder::with_buffer(
            compressed,
        )?)),
        _ => None,
    })
}

/// Reads `reader` to its end into a buffer that never grows past `limit + 1` bytes.
#[cfg(any(feature = "gzip", feature = "lz4", feature = "zstd"))]
fn read_bounded(mut reader: impl Read, limit: usize) -> Result<Vec<u8>, DecompressError> {
    // One byte past the limit proves the output is too large without producing more.
    let capacity_max = limit.saturating_add(1);
    let mut out = Vec::new();
    let mut filled = 0usize;
    loop {
        if filled == out.len() {
            if out.len() >= capacity_max {
                return Err(DecompressError::TooLarge);
            }
            let grown = out
                .len()
                .saturating_mul(2)
                .max(DECOMPRESS_CHUNK_BYTES)
                .min(capacity_max);
            out.resize(grown, 0);
        }
        let spare = out.get_mut(filled..).unwrap_or_default();
        match reader.read(spare) {
            Ok(0) => break,
            Ok(read) => filled = filled.saturating_add(read),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
    if filled > limit {
        return Err(DecompressError::TooLarge);
    }
    out.truncate(filled);
    Ok(out)
}

#[cfg(feature = "snappy")]
fn decompress_snappy_raw(compressed: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    // Raw snappy states its output length up front; check it before allocating for it.
    let length = snap::raw::decompress_len(compressed)?;
    if length > limit {
        return Err(DecompressError::TooLarge);
    }
    let mut out = vec![0; length];
    let written = snap::raw::Decoder::new().decompress(compressed, &mut out)?;
    out.truncate(written);
    Ok(out)
}

#[cfg(feature = "snappy")]
fn decompress_xerial(mut input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    while !input.is_empty() {
        // snappy-java concatenates streams by repeating the header, and skips it when reading.
        if input.starts_with(&XERIAL_MAGIC) {
            input = input
                .get(XERIAL_HEADER_BYTES..)
                .ok_or_else(|| corrupt("truncated xerial snappy header"))?;
            continue;
        }
        let length = input
            .try_get_u32()
            .map_err(|_| corrupt("truncated xerial snappy block length"))?;
        let length = usize::try_from(length).map_err(|_| corrupt("xerial block too long"))?;
        let (block, rest) = input
            .split_at_checked(length)
            .ok_or_else(|| corrupt("truncated xerial snappy block"))?;
        input = rest;
        let block_length = snap::raw::decompress_len(block)?;
        let start = out.len();
        let end = start
            .checked_add(block_length)
            .filter(|&end| end <= limit)
            .ok_or(DecompressError::TooLarge)?;
        out.resize(end, 0);
        let written = decoder.decompress(block, out.get_mut(start..).unwrap_or_default())?;
        out.truncate(start.saturating_add(written));
    }
    Ok(out)
}

#[cfg(feature = "snappy")]
fn corrupt(message: &'static str) -> DecompressError {
    DecompressError::Corrupt(io::Error::new(io::ErrorKind::InvalidData, message))
}

// The codec tests need every codec; `record/tests.rs` covers a build without them.
#[cfg(test)]
#[cfg(feature = "compression")]
mod tests;

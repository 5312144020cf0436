use super::*;

const CODECS: [Compression; 5] = Compression::ALL;

fn compressed(compression: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress(compression, data, 1, &mut out).unwrap();
    out
}

// Mildly compressible data over several snappy (32 KiB) and LZ4 (64 KiB) blocks.
fn sample_data(bytes: usize) -> Vec<u8> {
    (0..bytes)
        .map(|index| (index % 251) as u8 ^ (index / 1000) as u8)
        .collect()
}

// Every codec round-trips empty, small and multi-block inputs.
#[test]
fn round_trip_every_codec() {
    for compression in CODECS {
        for bytes in [0, 1, 1_000, 200_000] {
            let data = sample_data(bytes);
            let packed = compressed(compression, &data);
            let unpacked = decompress(compression, &packed, data.len()).unwrap();
            assert!(unpacked == data, "{compression:?} with {bytes} bytes");
        }
    }
}

// The container formats Kafka's Java client expects: xerial header for snappy, LZ4 frame magic
// with independent 64 KiB blocks, gzip and zstd magic numbers.
#[test]
fn container_formats_match_kafka() {
    let data = sample_data(1_000);
    let snappy = compressed(Compression::Snappy, &data);
    assert_eq!(
        snappy[..16],
        *b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"
    );
    let lz4 = compressed(Compression::Lz4, &data);
    assert_eq!(lz4[..4], [0x04, 0x22, 0x4d, 0x18]);
    // FLG: version 01, block independence set; BD: 64 KiB maximum block size.
    assert_eq!(lz4[4] & 0b1110_0000, 0b0110_0000);
    assert_eq!(lz4[5], 0x40);
    assert_eq!(compressed(Compression::Gzip, &data)[..2], [0x1f, 0x8b]);
    assert_eq!(
        compressed(Compression::Zstd, &data)[..4],
        [0x28, 0xb5, 0x2f, 0xfd]
    );
}

// snappy-java falls back to raw snappy without its header and skips repeated headers of
// concatenated streams; so do we.
#[test]
fn snappy_raw_and_concatenated_xerial() {
    let data = sample_data(5_000);
    let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
    assert_eq!(
        decompress(Compression::Snappy, &raw, data.len()).unwrap(),
        data
    );

    let twice = [
        compressed(Compression::Snappy, &data),
        compressed(Compression::Snappy, &data),
    ]
    .concat();
    assert_eq!(
        decompress(Compression::Snappy, &twice, 2 * data.len()).unwrap(),
        [data.clone(), data].concat()
    );
}

// Output one byte over the limit fails for every codec; output exactly at it succeeds.
#[test]
fn limit_is_exact() {
    let data = sample_data(100_000);
    for compression in CODECS {
        let packed = compressed(compression, &data);
        assert_eq!(
            decompress(compression, &packed, data.len()).unwrap().len(),
            data.len()
        );
        assert!(
            matches!(
                decompress(compression, &packed, data.len() - 1),
                Err(DecompressError::TooLarge)
            ),
            "{compression:?}"
        );
    }
    let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
    assert!(matches!(
        decompress(Compression::Snappy, &raw, data.len() - 1),
        Err(DecompressError::TooLarge)
    ));
}

// Raw snappy states its length up front: a claim of 4 GiB with a 1 MiB limit fails before
// any allocation.
#[test]
fn snappy_claimed_length_is_checked_before_allocating() {
    // Varint 0xffffffff, then nothing.
    let claim = [0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(matches!(
        decompress(Compression::Snappy, &claim, 1 << 20),
        Err(DecompressError::TooLarge)
    ));
}

// Garbage and truncated streams are errors, not panics or empty output.
#[test]
fn corrupt_input_is_rejected() {
    let data = sample_data(10_000);
    for compression in CODECS.into_iter().skip(1) {
        let packed = compressed(compression, &data);
        let truncated = &packed[..packed.len() / 2];
        assert!(
            matches!(
                decompress(compression, truncated, 1 << 20),
                Err(DecompressError::Corrupt(_))
            ),
            "{compression:?} truncated"
        );
        let garbage = [0x5au8; 64];
        assert!(
            matches!(
                decompress(compression, &garbage, 1 << 20),
                Err(DecompressError::Corrupt(_))
            ),
            "{compression:?} garbage"
        );
    }
    // A xerial block length past the end of the input.
    let mut xerial = compressed(Compression::Snappy, &data);
    xerial[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decompress(Compression::Snappy, &xerial, 1 << 20),
        Err(DecompressError::Corrupt(_))
    ));
}

//! What checking a batch's records costs on the append path: `validate_batch` (header and
//! CRC-32C, what every append ran before issue 11) against `validate_batch_records` (the
//! same plus the walk over every record, and the decompression of a compressed batch), on
//! the same batch in the same run, so their ratio holds on a noisy machine.
//!
//! Batches: 1,000 records of 1 KiB (the storage benchmarks' batch) uncompressed and
//! zstd-compressed, and 10,000 records of 32 bytes (the walk's worst case per byte).
//!
//! Run: `cargo bench -p ledge-protocol --bench validate`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ledge_protocol::{
    Compression, DecodeLimits, EncodeOptions, Record, encode_batch, validate_batch,
    validate_batch_records,
};

criterion_group! {
    name = validate;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = header_and_records
}
criterion_main!(validate);

/// `count` records with `value_bytes`-byte values: pseudo-random bytes (incompressible), or
/// text that repeats like JSON does when `compressible`.
fn batch(count: usize, value_bytes: usize, compression: Compression, compressible: bool) -> Bytes {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let records: Vec<Record> = (0..count)
        .map(|index| {
            let value: Vec<u8> = if compressible {
                format!(
                    "{{\"id\":{index},\"name\":\"sensor-{}\",\"reading\":",
                    index % 97
                )
                .bytes()
                .cycle()
                .take(value_bytes)
                .collect()
            } else {
                (0..value_bytes)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state.to_le_bytes()[0]
                    })
                    .collect()
            };
            Record {
                timestamp: 1_700_000_000_000 + index as i64,
                key: Some(Bytes::from(format!("key-{index}"))),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
            }
        })
        .collect();
    let options = EncodeOptions {
        compression,
        ..EncodeOptions::default()
    };
    encode_batch(&records, &options).expect("the bench batch encodes")
}

fn header_and_records(criterion: &mut Criterion) {
    let limits = DecodeLimits::default();
    let cases = [
        ("1000x1KiB", batch(1000, 1024, Compression::None, false)),
        ("1000x1KiB_zstd", batch(1000, 1024, Compression::Zstd, true)),
        ("10000x32B", batch(10_000, 32, Compression::None, false)),
    ];
    for (name, batch) in &cases {
        let mut group = criterion.benchmark_group(format!("validate/{name}"));
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function("header_crc", |bencher| {
            bencher.iter(|| validate_batch(black_box(batch)).expect("valid"));
        });
        group.bench_function("header_crc_records", |bencher| {
            bencher.iter(|| validate_batch_records(black_box(batch), &limits).expect("valid"));
        });
        group.finish();
    }
}

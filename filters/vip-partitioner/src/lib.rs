//! Partitioner: keys starting with `vip-` go to partition 0; every other key goes where Kafka's
//! default partitioner would put it, `to_positive(murmur2(key)) % partition_count`, so a
//! non-VIP key lands on the same partition as from any Kafka client.
//!
//! Records without a key fail by default (`record has no key`): a keyless record here is
//! usually a producer bug, and spreading it silently would hide that. Set the optional
//! `null_key_partition` parameter to place keyless records on that partition instead.
//!
//! Deploy with `--kind partitioner` and optionally `--param null_key_partition=0`.

use ledge_wasm_sdk::{Record, partitioner};

/// The key prefix that sends a record to partition 0.
pub const VIP_PREFIX: &[u8] = b"vip-";

/// Partition 0 for VIP keys, Kafka's murmur2 placement for the rest.
#[partitioner]
pub fn vip_partitioner(
    record: &Record<'_>,
    partition_count: u32,
    null_key_partition: Option<u32>,
) -> Result<u32, String> {
    let Some(key) = record.key() else {
        return null_key_partition.ok_or_else(|| {
            "record has no key (set the `null_key_partition` parameter to place keyless records)"
                .to_owned()
        });
    };
    if key.starts_with(VIP_PREFIX) {
        return Ok(0);
    }
    Ok(partition_for_key(key, partition_count))
}

/// The partition Kafka's default partitioner gives `key` among `partition_count` (at least 1):
/// `to_positive(murmur2(key)) % partition_count`.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    // `to_positive` clears the sign bit, so the value is in 0..=i32::MAX and fits a u32.
    let hash = (murmur2(key) & 0x7fff_ffff) as u32;
    hash % partition_count.max(1)
}

/// Kafka's 32-bit murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit,
/// including its seed `0x9747b28c` and Java's signed arithmetic. The same code as the Ledge
/// client's `partitioner.rs`, which a plug-in cannot link.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java's `int` arithmetic wraps; u32 wrapping ops give the same bits. Java's `length` is
    // an int, so lengths past i32::MAX cannot occur there; truncation matches it anyway.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's switch falls through from case 3 to case 1.
    if let Some(&byte) = tail.get(2) {
        h ^= u32::from(byte) << 16;
    }
    if let Some(&byte) = tail.get(1) {
        h ^= u32::from(byte) << 8;
    }
    if let Some(&byte) = tail.first() {
        h ^= u32::from(byte);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests;

//! Kafka's default placement of a keyed record, bit for bit: the client's default partitioner
//! and a guest partitioner plug-in (through the SDK) link this one copy, so a key lands on the
//! same partition whichever wrote it, and as from any Kafka client.

/// The partition Kafka's default partitioner gives `key` among `partition_count` (at least 1):
/// `to_positive(murmur2(key)) % partition_count`.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    // `to_positive` clears the sign bit, so the value is in 0..=i32::MAX and fits a u32.
    let hash = (murmur2(key) & 0x7fff_ffff) as u32;
    hash % partition_count.max(1)
}

/// Kafka's 32-bit murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit,
/// including its seed `0x9747b28c` and Java's signed arithmetic.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java's `int` arithmetic wraps; u32 wrapping ops give the same bits. Java's `length` is
    // an int, so lengths past i32::MAX cannot occur there; truncation matches it anyway.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let Some(&word) = chunk.first_chunk::<4>() else {
            continue;
        };
        let mut k = u32::from_le_bytes(word);
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

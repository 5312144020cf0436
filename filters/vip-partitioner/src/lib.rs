//! Partitioner: keys starting with `vip-` go to partition 0; every other key goes where Kafka's
//! default partitioner would put it, `to_positive(murmur2(key)) % partition_count`, so a
//! non-VIP key lands on the same partition as from any Kafka client.
//!
//! Records without a key fail by default (`record has no key`): a keyless record here is
//! usually a producer bug, and spreading it silently would hide that. Set the optional
//! `null_key_partition` parameter to place keyless records on that partition instead.
//!
//! Deploy with `--kind partitioner` and optionally `--param null_key_partition=0`.

// `partition_for_key` is Kafka's placement, the same code as the Ledge client's (ledge-protocol,
// through the SDK).
use ledge_wasm_sdk::{Record, partition_for_key, partitioner};

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

#[cfg(test)]
mod tests;

use ledge_protocol::wasm_abi::{
    INIT_ERROR, INIT_OK, TAG_DROP, TAG_ERROR, TAG_KEEP, TAG_PARTITION, TAG_RECORDS,
};

use super::*;

fn entries(count: u32, body: &[u8]) -> Vec<u8> {
    let mut out = count.to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

// The decoder is the host's, so a test catches output the node would refuse, with the
// node's message.
#[test]
fn decode_output_applies_the_host_checks() {
    assert_eq!(
        decode_output(PluginKind::Filter, &entries(2, &[TAG_KEEP, TAG_DROP]), 2, 1),
        Ok(vec![Outcome::Keep, Outcome::Drop])
    );
    assert_eq!(
        decode_output(PluginKind::Filter, &entries(1, &[TAG_KEEP]), 2, 1),
        Err("1 entries for 2 input records".to_owned())
    );
    assert_eq!(
        decode_output(PluginKind::Partitioner, &entries(1, &[TAG_KEEP]), 1, 1),
        Err("entry 0: a partitioner may not return KEEP".to_owned())
    );
    assert_eq!(
        decode_output(PluginKind::Filter, &entries(1, &[9]), 1, 1),
        Err("entry 0: unknown tag 9".to_owned())
    );
    assert_eq!(
        decode_output(
            PluginKind::Partitioner,
            &entries(1, &[TAG_PARTITION, 2, 0, 0, 0]),
            1,
            2
        ),
        Err("entry 0: partition 2 out of range (the topic has 2)".to_owned())
    );
    assert_eq!(
        decode_output(
            PluginKind::Map,
            &entries(1, &[TAG_RECORDS, 0, 0, 0, 0]),
            1,
            1
        ),
        Err("entry 0: a map may not return 0 records".to_owned())
    );
    // A timestamp below -1 is refused, as the node refuses it.
    let mut negative = vec![TAG_RECORDS, 1, 0, 0, 0];
    negative.extend_from_slice(&(-2i64).to_le_bytes());
    negative.extend_from_slice(&[0xff; 8]);
    negative.extend_from_slice(&[0; 4]);
    assert_eq!(
        decode_output(PluginKind::FlatMap, &entries(1, &negative), 1, 1),
        Err("entry 0: timestamp -2".to_owned())
    );
    assert_eq!(
        decode_output(PluginKind::Filter, &entries(1, &[TAG_KEEP, 0]), 1, 1),
        Err("1 bytes after the last entry".to_owned())
    );
    assert_eq!(
        decode_output(
            PluginKind::Filter,
            &entries(1, &[TAG_ERROR, 5, 0, 0, 0, b'a']),
            1,
            1
        ),
        Err("entry 0: error message needs 5 bytes at position 9, output is 10 bytes".to_owned())
    );
}

// Input batches encode the header fields and records so the SDK reads them back unchanged.
#[test]
fn encode_batch_writes_the_header() {
    let info = BatchInfo {
        partition: 2,
        partition_count: 5,
        base_offset: -3,
        base_timestamp: 9,
    };
    let batch = encode_batch(&info, &[OutputRecord::new(), OutputRecord::new()]);
    assert_eq!(batch[..4], 2u32.to_le_bytes());
    assert_eq!(batch[4..8], 2u32.to_le_bytes());
    assert_eq!(batch[8..12], 5u32.to_le_bytes());
    assert_eq!(batch[12..20], (-3i64).to_le_bytes());
    assert_eq!(batch[20..28], 9i64.to_le_bytes());
    // Two minimal records: length 6 (zigzag 12), attributes, timestamp delta, offset delta
    // (0, then 1 as zigzag 2), null key and value (-1 as zigzag 1), no headers.
    assert_eq!(batch[28..], [12, 0, 0, 0, 1, 1, 0, 12, 0, 0, 2, 1, 1, 0]);
}

#[test]
fn decode_init_result_reads_both_statuses() {
    assert_eq!(decode_init_result(&[INIT_OK]), Ok(Ok(())));
    assert_eq!(
        decode_init_result(&[INIT_ERROR, 2, 0, 0, 0, b'n', b'o']),
        Ok(Err("no".to_owned()))
    );
    assert_eq!(decode_init_result(&[7]), Err("init status 7".to_owned()));
    assert_eq!(
        decode_init_result(&[INIT_OK, 0]),
        Err("1 bytes after the init result".to_owned())
    );
    assert_eq!(
        decode_init_result(&[INIT_ERROR, 2, 0, 0, 0, b'n', b'o', b'!']),
        Err("1 bytes after the init result".to_owned())
    );
}

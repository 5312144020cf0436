//! `record_batch`: the record-batch checks every produce runs, on the Kafka and QUIC paths
//! alike. A produce payload is split into batches with [`BatchIter`] (as `broker::produce`
//! does), and each batch goes through [`validate_batch_records`], the check
//! `PartitionLog::append` makes before a batch gets offsets (`storage/log/append.rs`), and
//! [`decode_batch`], what readers, compaction and recompression use. The whole input is also
//! checked as one batch, so a mutated header reaches the record walk, and once more with its
//! length field and CRC made to match, so a mutated record region does too.
//!
//! Oracles:
//! - The split tiles a prefix of the payload with whole batches, each as long as its header says.
//! - Validation accepts exactly the batches that decode and whose header's `max_timestamp`
//!   bounds every record (validation's one extra rule): anything appended can be read back,
//!   and nothing readable is refused for another reason.
//! - On acceptance, both give the same header; the decode holds `record_count` records whose
//!   offsets ascend strictly within `base_offset..=last_offset`.
//! - Stamping a base offset and leader epoch (outside the CRC, as the log does) keeps the batch
//!   valid and moves every offset by the same amount.
//! - Re-encoding the records with their offset deltas, under a codec chosen from the input (as
//!   a topic's `compression.type` recompresses), decodes to the same records.

use bytes::Bytes;
use ledge_protocol::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, BatchIter, Compression, DecodeError,
    DecodeLimits, DecodedBatch, EncodeOptions, TimestampType, decode_batch,
    encode_batch_with_deltas, set_base_offset, set_partition_leader_epoch, validate_batch_records,
};

/// The decode limits of the fuzz run: smaller than the node's (64 MiB, 1 Mi records and
/// headers) so a decompression bomb costs milliseconds, not seconds; the oracles hold for any
/// limits, and both sides are checked with the same ones, as the node does.
pub const FUZZ_DECODE_LIMITS: DecodeLimits = DecodeLimits {
    decompressed_bytes_max: 1 << 20,
    records_max: 1 << 12,
    headers_max: 1 << 12,
};

const CODECS: [Compression; 5] = Compression::ALL;

/// Runs one input: as a produce payload, and again as one batch whose length field and CRC-32C
/// are made to match it. A producer can always send a correct CRC (it is no secret), and this
/// way each mutation reaches the record walk instead of stopping at the checksum.
pub fn run(data: &[u8]) {
    check_payload(data);
    if data.len() >= BATCH_HEADER_BYTES {
        let mut sealed = data.to_vec();
        let batch_length =
            i32::try_from(data.len() - BATCH_LENGTH_PREFIX_BYTES).unwrap_or(i32::MAX);
        sealed[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&sealed[CRC_COVERED_FROM..]);
        sealed[17..21].copy_from_slice(&crc.to_be_bytes());
        check_payload(&sealed);
    }
}

/// Where the CRC-32C's coverage starts: the attributes, after the CRC itself.
const CRC_COVERED_FROM: usize = 21;

fn check_payload(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let mut iter = BatchIter::new(&payload);
    let mut covered = 0usize;
    for item in iter.by_ref() {
        let Ok((header, batch)) = item else {
            break;
        };
        assert_eq!(
            batch.as_ptr(),
            payload[covered..].as_ptr(),
            "split skipped bytes"
        );
        assert_eq!(batch.len(), header.total_bytes());
        covered += batch.len();
        check_batch(&payload.slice_ref(batch), data.len());
    }
    assert_eq!(iter.position(), covered);
    assert!(iter.next().is_none(), "the split goes on after it stopped");
    if covered != data.len() {
        check_batch(&payload, data.len());
    }
}

/// Checks one batch against the oracles; `choice` picks the recompression codec.
fn check_batch(batch: &Bytes, choice: usize) {
    let limits = FUZZ_DECODE_LIMITS;
    let validated = validate_batch_records(batch, &limits);
    let decoded = decode_batch(batch, &limits);
    if let Err(error) = &validated {
        let _ = error.to_string();
    }
    match (validated, decoded) {
        (Ok(header), Ok(decoded)) => {
            assert_eq!(
                header, decoded.header,
                "validation and decode read different headers"
            );
            check_decoded(&decoded);
            assert!(
                decoded
                    .records
                    .iter()
                    .all(|record| record.timestamp <= header.max_timestamp),
                "validation accepted a record stamped after the batch's max timestamp"
            );
            check_stamp(batch, &decoded);
            check_reencode(&decoded, CODECS[choice % CODECS.len()]);
        }
        (Err(error), Ok(decoded)) => {
            check_decoded(&decoded);
            assert!(
                matches!(error, DecodeError::TimestampAfterBatchMax { .. }),
                "validation refused a batch that decodes: {error}"
            );
            assert!(
                decoded
                    .records
                    .iter()
                    .any(|record| record.timestamp > decoded.header.max_timestamp),
                "validation refused a batch for a timestamp no record has"
            );
        }
        (Ok(header), Err(error)) => {
            panic!("validation accepted a batch decode refuses ({error}): {header:?}")
        }
        (Err(_), Err(_)) => {}
    }
}

/// Counts and offsets of a decoded batch agree with its header.
fn check_decoded(decoded: &DecodedBatch) {
    let header = &decoded.header;
    assert_eq!(
        decoded.records.len(),
        usize::try_from(header.record_count).unwrap_or(0),
        "record count"
    );
    let mut previous = None;
    for record in &decoded.records {
        assert!(record.offset >= header.base_offset, "offset below the base");
        assert!(
            record.offset <= header.last_offset(),
            "offset past the last"
        );
        assert!(previous < Some(record.offset), "offsets do not ascend");
        previous = Some(record.offset);
        if header.timestamp_type() == TimestampType::LogAppendTime {
            assert_eq!(record.timestamp, header.max_timestamp);
        }
    }
}

/// The log's stamp keeps the batch valid and shifts its offsets.
fn check_stamp(batch: &Bytes, decoded: &DecodedBatch) {
    let header = &decoded.header;
    // A base offset the span still fits after, derived from the input so it varies.
    let span = i64::from(header.last_offset_delta);
    let new_base = (header.base_offset ^ 0x5a5a).rem_euclid(i64::MAX - span);
    let mut stamped = batch.to_vec();
    set_base_offset(&mut stamped, new_base).expect("a valid batch takes a base offset");
    set_partition_leader_epoch(&mut stamped, 7).expect("a valid batch takes an epoch");
    let stamped = Bytes::from(stamped);
    let restamped = validate_batch_records(&stamped, &FUZZ_DECODE_LIMITS)
        .expect("stamping broke a valid batch");
    assert_eq!(restamped.base_offset, new_base);
    assert_eq!(restamped.partition_leader_epoch, 7);
    restamped
        .check_stamp(new_base, 7)
        .expect("the stamp reads back");
    let moved = decode_batch(&stamped, &FUZZ_DECODE_LIMITS).expect("a stamped batch decodes");
    assert_eq!(moved.records.len(), decoded.records.len());
    for (before, after) in decoded.records.iter().zip(&moved.records) {
        assert_eq!(after.offset - new_base, before.offset - header.base_offset);
        assert_eq!((&after.key, &after.value), (&before.key, &before.value));
    }
}

/// Recompression keeps every record.
fn check_reencode(decoded: &DecodedBatch, compression: Compression) {
    let header = &decoded.header;
    let deltas: Vec<i32> = decoded
        .records
        .iter()
        .map(|record| {
            i32::try_from(record.offset - header.base_offset).expect("checked within the span")
        })
        .collect();
    let records: Vec<_> = decoded
        .records
        .iter()
        .cloned()
        .map(ledge_protocol::DecodedRecord::into_record)
        .collect();
    let options = EncodeOptions {
        compression,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        base_offset: header.base_offset,
        partition_leader_epoch: header.partition_leader_epoch,
        transactional: header.is_transactional(),
        ..EncodeOptions::default()
    };
    // No records (an emptied batch) or timestamps too far apart for one batch: nothing to
    // recompress, which `prepare_batch` reports as an error too.
    let Ok(encoded) =
        encode_batch_with_deltas(&records, &deltas, header.last_offset_delta, &options)
    else {
        return;
    };
    let limits = DecodeLimits {
        // The node's own limit: an uncompressed input batch may hold more than the fuzz
        // limit once it is recompressed.
        decompressed_bytes_max: 64 << 20,
        ..FUZZ_DECODE_LIMITS
    };
    let again = decode_batch(&encoded, &limits).expect("a recompressed batch decodes");
    assert_eq!(
        again.records, decoded.records,
        "recompression changed the records"
    );
    validate_batch_records(&encoded, &limits).expect("a recompressed batch validates");
}

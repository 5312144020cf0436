//! Consumer unit tests: decoding fetched batches from a position.

use bytes::{Bytes, BytesMut};
use ledge_protocol::{Compression, EncodeOptions, Record, encode_batch};

use super::*;

fn batch(base_offset: i64, count: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|index| Record {
            timestamp: 1000 + index as i64,
            key: Some(Bytes::from(format!("k{}", base_offset + index as i64))),
            value: Some(Bytes::from(format!("v{}", base_offset + index as i64))),
            headers: vec![Header {
                key: "h".into(),
                value: None,
            }],
        })
        .collect();
    let options = EncodeOptions {
        base_offset,
        compression,
        ..EncodeOptions::default()
    };
    encode_batch(&records, &options).unwrap()
}

fn state(fetch_offset: i64) -> PartitionState {
    PartitionState {
        topic: Arc::from("orders"),
        position: Some(fetch_offset),
        fetch_offset,
        buffered: VecDeque::new(),
    }
}

fn partition() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

#[test]
fn records_below_the_fetch_offset_are_skipped() {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&batch(0, 5, Compression::None));
    bytes.extend_from_slice(&batch(5, 5, Compression::Zstd));
    let mut state = state(3);
    absorb_batches(
        &mut state,
        &partition(),
        &bytes.freeze(),
        &DecodeLimits::default(),
    )
    .unwrap();
    let offsets: Vec<i64> = state.buffered.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, (3..10).collect::<Vec<_>>());
    assert_eq!(state.fetch_offset, 10);
    let first = &state.buffered[0];
    assert_eq!(first.key.as_deref(), Some(&b"k3"[..]));
    assert_eq!(first.value.as_deref(), Some(&b"v3"[..]));
    assert_eq!(first.timestamp, 1003);
    assert_eq!(first.headers.len(), 1);
}

#[test]
fn a_cut_batch_at_the_end_is_left_for_the_next_fetch() {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&batch(0, 2, Compression::None));
    let second = batch(2, 2, Compression::None);
    bytes.extend_from_slice(&second[..second.len() - 3]);
    let mut state = state(0);
    absorb_batches(
        &mut state,
        &partition(),
        &bytes.freeze(),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(state.buffered.len(), 2);
    assert_eq!(state.fetch_offset, 2);
}

/// A batch whose last byte is flipped: its CRC no longer matches.
fn corrupt_batch(base_offset: i64, count: usize) -> BytesMut {
    let mut bytes = BytesMut::from(&batch(base_offset, count, Compression::None)[..]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bytes
}

/// Absorbs `bytes` into `state`, expecting a corrupt batch at `offset`.
fn expect_corrupt_at(state: &mut PartitionState, bytes: BytesMut, offset: i64) {
    let error = absorb_batches(
        state,
        &partition(),
        &bytes.freeze(),
        &DecodeLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, ConsumeError::CorruptBatch { offset: at, .. } if at == offset),
        "{error}"
    );
}

#[test]
fn a_corrupt_batch_is_an_error() {
    let mut state = state(0);
    expect_corrupt_at(&mut state, corrupt_batch(0, 3), 0);
    assert!(state.buffered.is_empty());
}

/// The records before a corrupt batch are handed out once: the next fetch starts at the bad
/// batch, not at the answer's start (which handed them out again after the error).
#[test]
fn a_corrupt_batch_after_good_ones_keeps_them_and_resumes_at_it() {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&batch(0, 3, Compression::None));
    bytes.extend_from_slice(&corrupt_batch(3, 3));
    let mut state = state(0);
    expect_corrupt_at(&mut state, bytes, 3);
    let offsets: Vec<i64> = state.buffered.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2]);
    assert_eq!(state.fetch_offset, 3, "read again from the bad batch");
}

/// The same when the bad batch is caught by its header (here its magic byte), before any
/// CRC check.
#[test]
fn a_batch_with_a_bad_header_after_good_ones_resumes_at_it() {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&batch(0, 3, Compression::None));
    let mut bad = BytesMut::from(&batch(3, 3, Compression::None)[..]);
    // base offset (8) + length (4) + partition leader epoch (4), then the magic byte.
    bad[16] = 1;
    bytes.extend_from_slice(&bad);
    let mut state = state(0);
    expect_corrupt_at(&mut state, bytes, 3);
    assert_eq!(state.buffered.len(), 3);
    assert_eq!(state.fetch_offset, 3);
}

#[test]
fn an_empty_answer_changes_nothing() {
    let mut state = state(7);
    absorb_batches(
        &mut state,
        &partition(),
        &Bytes::new(),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(state.fetch_offset, 7);
    assert_eq!(state.position, Some(7));
}

#[test]
fn partitions_group_by_topic_and_flatten_back() {
    let partitions: BTreeSet<TopicPartition> = [
        TopicPartition::new("payments", 0),
        TopicPartition::new("orders", 2),
        TopicPartition::new("orders", 0),
    ]
    .into_iter()
    .collect();
    let grouped = group::grouped(&partitions);
    assert_eq!(grouped.len(), 2);
    assert_eq!(grouped[0].topic, "orders");
    assert_eq!(grouped[0].partitions, vec![0, 2]);
    assert_eq!(flatten(&grouped), partitions);
}

#[test]
fn heartbeats_report_what_is_owned_and_the_subscription() {
    let settings = GroupSettings {
        group_id: "billing".into(),
        instance_id: Some("host-1".into()),
        assignor: ASSIGNOR_DEFAULT.into(),
        session_timeout: Duration::from_secs(10),
        max_poll_interval: Duration::from_secs(300),
        heartbeat_interval: None,
    };
    let shared = GroupShared::new(Subscription::Pattern("ord.*".into()));
    let mut state = shared.lock();
    state.member_id = "member-1".into();
    state.owned.insert(TopicPartition::new("orders", 1));
    let Request::ConsumerGroupHeartbeat(request) =
        group::heartbeat_request(&settings, &state, group::LEAVE_STATIC_EPOCH)
    else {
        panic!("not a heartbeat");
    };
    assert_eq!(request.member_epoch, -2);
    assert_eq!(request.session_timeout_ms, 10_000);
    assert_eq!(request.rebalance_timeout_ms, 300_000);
    assert_eq!(request.subscribed_pattern.as_deref(), Some("ord.*"));
    assert!(request.subscribed_topics.is_empty());
    assert_eq!(request.owned_partitions.len(), 1);
    assert_eq!(request.instance_id.as_deref(), Some("host-1"));
}

/// A removed member commits with the id and epoch it had (which the node refuses), not with
/// an empty id (an administrative commit the node takes while the group is empty); once it
/// rejoins it commits with its new id.
#[test]
fn a_removed_member_commits_as_itself_until_it_rejoins() {
    let shared = GroupShared::new(Subscription::Topics(vec!["orders".into()]));
    let mut state = shared.lock();
    assert_eq!(
        state.commit_identity(),
        (String::new(), 0),
        "before the first join"
    );
    state.member_id = "member-1".into();
    state.member_epoch = 7;
    assert_eq!(state.commit_identity(), ("member-1".into(), 7));
    group::forget_membership(&mut state);
    assert!(state.member_id.is_empty() && state.lost);
    assert_eq!(state.commit_identity(), ("member-1".into(), 7));
    state.member_id = "member-2".into();
    state.member_epoch = 9;
    assert_eq!(state.commit_identity(), ("member-2".into(), 9));
}

/// A fenced member (FencedMemberEpoch) loses what it owns and rejoins under the same id at
/// epoch 0, as Kafka's consumer does, so the node replaces its old place at once; a member the
/// node no longer knows (UnknownMemberId) joins afresh with an empty id.
#[test]
fn a_fenced_member_rejoins_under_its_id_at_epoch_zero() {
    let settings = GroupSettings {
        group_id: "g".into(),
        instance_id: None,
        assignor: "uniform".into(),
        session_timeout: Duration::from_secs(10),
        max_poll_interval: Duration::from_secs(300),
        heartbeat_interval: None,
    };
    let shared = GroupShared::new(Subscription::Topics(vec!["orders".into()]));
    let mut state = shared.lock();
    state.member_id = "member-1".into();
    state.member_epoch = 7;
    state.target.insert(TopicPartition::new("orders", 0));
    group::handle_refused_membership(&mut state, ErrorCode::FencedMemberEpoch);
    assert!(state.lost && state.target.is_empty());
    let Request::ConsumerGroupHeartbeat(rejoin) =
        group::heartbeat_request(&settings, &state, state.member_epoch)
    else {
        panic!("not a heartbeat");
    };
    assert_eq!(
        (rejoin.member_id.as_str(), rejoin.member_epoch),
        ("member-1", 0)
    );
    state.lost = false;
    group::handle_refused_membership(&mut state, ErrorCode::UnknownMemberId);
    assert!(state.lost && state.member_id.is_empty() && state.member_epoch == 0);
}

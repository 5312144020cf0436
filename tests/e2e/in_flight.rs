//! The node-wide bound on request and response bytes in flight (`limits.in_flight_bytes_max`)
//! and each connection's share of it, against a real node process.

use bytes::Bytes;
use ledge_e2e::{NodeOptions, NodeProcess, RawClient, runtime};
use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

const SHARE_BYTES: u64 = 6 * 1024 * 1024;
const ANSWER_BYTES: u32 = 2 * 1024 * 1024;
/// Fetches the greedy client sends and never reads: unbounded, their answers would pin
/// `GREEDY_FETCHES` x `ANSWER_BYTES` = 128 MiB in the node.
const GREEDY_FETCHES: usize = 64;

fn big_batch(first: usize) -> Bytes {
    let records: Vec<Record> = (first..first + 4)
        .map(|number| Record {
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{number}"))),
            value: Some(Bytes::from(vec![b'x'; 60 * 1024])),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

fn fetch_everything() -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: ANSWER_BYTES,
        topics: vec![FetchTopic {
            name: "big".into(),
            partitions: vec![FetchPartition {
                current_leader_epoch: None,
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: ANSWER_BYTES,
            }],
        }],
        plugin: None,
    })
}

/// Bytes of record batches in a fetch answer.
fn fetched_bytes(response: Option<Response>) -> usize {
    let Some(Response::Fetch(fetch)) = response else {
        panic!("not a fetch answer: {response:?}")
    };
    fetch.topics[0].partitions[0].records.len()
}

/// A kilobyte figure from `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// Goal: a client that sends many fetches and never reads their answers holds at most its
// share of the node's budget: its answers beyond the share are refused (TooManyRequests,
// retriable), another client is served in full meanwhile, nothing is lost once the greedy
// client reads, and the node's peak memory stays far below what the unread answers would
// pin unbounded. Meanwhile its large requests are refused (TooManyRequests) and read whole
// once its answers are read; a frame larger than the share on its own is refused naming the
// limit.
// Method: outcomes and counts only (no durations): the greedy client reads just the 6-byte
// header of each answer, leaving full answers unread while the other client fetches.
#[test]
fn a_client_over_its_share_is_refused_while_another_is_served() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some(format!(
            "[limits]\nin_flight_bytes_max = 16777216\nin_flight_bytes_per_connection_max = {SHARE_BYTES}\nframe_bytes_max = 16777216\nfetch_bytes_max = 8388608\n"
        )),
        ..NodeOptions::default()
    });
    runtime().block_on(async {
        let other = RawClient::connect(&node).await;
        let (_, Some(Response::CreateTopics(created))) = other
            .request(&Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    replication_factor: None,
                    name: "big".into(),
                    partitions: 1,
                    configs: Vec::new(),
                }],
                validate_only: false,
            }))
            .await
        else {
            panic!("no CreateTopics answer")
        };
        assert_eq!(created.topics[0].error, ErrorCode::None);
        for number in 0..8 {
            let (header, _) = other
                .request(&Request::Produce(ProduceRequest {
                    acks: Acks::All,
                    timeout_ms: 10_000,
                    topics: vec![ProduceTopic {
                        name: "big".into(),
                        partitions: vec![ProducePartition {
                            current_leader_epoch: None,
                            partition: 0,
                            records: big_batch(number * 4),
                        }],
                    }],
                }))
                .await;
            assert_eq!(header.error, ErrorCode::None);
        }
        let (_, full) = other.request(&fetch_everything()).await;
        let full_bytes = fetched_bytes(full);
        assert!(full_bytes > 1024 * 1024, "{full_bytes}");
        let rss_before_kib = memory_kib(node.pid(), "VmRSS:");

        let greedy = RawClient::connect(&node).await;
        let frame = encode_request(1, "greedy", &fetch_everything());
        let mut streams = Vec::new();
        for _ in 0..GREEDY_FETCHES {
            let (mut send, receive) = greedy.connection.open_bi().await.unwrap();
            send.write_all(&frame).await.unwrap();
            send.finish().unwrap();
            streams.push((send, receive));
        }
        let mut answered = Vec::new();
        let mut refused = 0;
        for (send, mut receive) in streams {
            let mut header = [0u8; 6];
            receive.read_exact(&mut header).await.unwrap();
            let code = ErrorCode::from_u16(u16::from_be_bytes([header[4], header[5]]));
            match code {
                ErrorCode::None => answered.push((send, receive, header)),
                ErrorCode::TooManyRequests => {
                    refused += 1;
                    let rest = receive.read_to_end(64 * 1024).await.unwrap();
                    let message = String::from_utf8_lossy(&rest);
                    assert!(
                        message.contains("limits.in_flight_bytes_per_connection_max"),
                        "{message}"
                    );
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        // At most SHARE_BYTES / ANSWER_BYTES answers fit in the greedy client's share.
        assert!(
            !answered.is_empty() && answered.len() <= 3,
            "{} full answers",
            answered.len()
        );
        assert_eq!(answered.len() + refused, GREEDY_FETCHES);

        // The greedy client's full answers are still unread; the other client is served.
        for _ in 0..3 {
            let (header, response) = other.request(&fetch_everything()).await;
            assert_eq!(header.error, ErrorCode::None, "{}", header.message);
            assert_eq!(fetched_bytes(response), full_bytes);
        }

        // A frame larger than the share on its own can never be served: refused at once.
        let oversized = vec![0u8; SHARE_BYTES as usize + 1024 * 1024];
        let bytes = other.exchange(Bytes::from(oversized)).await.unwrap();
        let (header, _) = decode_response(ApiKey::Metadata, Bytes::from(bytes)).unwrap();
        assert_eq!(header.error, ErrorCode::FrameTooLarge);
        assert!(
            header
                .message
                .contains("limits.in_flight_bytes_per_connection_max"),
            "{}",
            header.message
        );

        // A frame of exactly the share is read whole (and refused only for not decoding),
        // and ApiVersions reports the share as the largest frame this connection can send.
        let exact = vec![0u8; SHARE_BYTES as usize];
        let bytes = other.exchange(Bytes::from(exact)).await.unwrap();
        let (header, _) = decode_response(ApiKey::Metadata, Bytes::from(bytes)).unwrap();
        assert_eq!(
            header.error,
            ErrorCode::InvalidRequest,
            "{}",
            header.message
        );
        let (_, versions) = other
            .request(&Request::ApiVersions(ApiVersionsRequest::default()))
            .await;
        let Some(Response::ApiVersions(versions)) = versions else {
            panic!("no ApiVersions answer")
        };
        assert_eq!(u64::from(versions.frame_bytes_max), SHARE_BYTES);

        // While its answers are unread, a large request of the greedy client finds its share
        // spent and is refused (retriable) partway through; once they are read, the same
        // frame is read whole (and answered for not decoding).
        let large = Bytes::from(vec![0u8; 5 * 1024 * 1024]);
        let bytes = greedy.exchange(large.clone()).await.unwrap();
        let (header, _) = decode_response(ApiKey::Metadata, Bytes::from(bytes)).unwrap();
        assert_eq!(
            header.error,
            ErrorCode::TooManyRequests,
            "{}",
            header.message
        );

        // Nothing was lost: the greedy client's answers are whole once it reads them, and
        // its refused fetches succeed when retried.
        for (_send, mut receive, header) in answered {
            let mut frame = header.to_vec();
            frame.extend(receive.read_to_end(16 * 1024 * 1024).await.unwrap());
            let (_, response) = decode_response(ApiKey::Fetch, Bytes::from(frame)).unwrap();
            assert_eq!(fetched_bytes(response), full_bytes);
        }
        let (header, response) = greedy.request(&fetch_everything()).await;
        assert_eq!(header.error, ErrorCode::None, "{}", header.message);
        assert_eq!(fetched_bytes(response), full_bytes);
        let bytes = greedy.exchange(large).await.unwrap();
        let (header, _) = decode_response(ApiKey::Metadata, Bytes::from(bytes)).unwrap();
        assert_eq!(
            header.error,
            ErrorCode::InvalidRequest,
            "{}",
            header.message
        );

        // Unbounded, the greedy client's answers alone would have pinned 128 MiB.
        let peak_kib = memory_kib(node.pid(), "VmHWM:");
        let growth_mib = peak_kib.saturating_sub(rss_before_kib) / 1024;
        assert!(
            growth_mib < 64,
            "the node's peak memory grew by {growth_mib} MiB"
        );
    });
}

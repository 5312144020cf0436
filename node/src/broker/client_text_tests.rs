//! Errors a client can cause on a failing disk answer without the data directory's path
//! (issue 15), on `SimDisk` with injected faults.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

use super::tests::produce;
use super::*;
use crate::clock::SimClock;
use crate::sim::SimDisk;
use crate::wasm::runtime::tests::Wat;

/// A data directory whose name cannot appear in a message by chance.
const DATA: &str = "/srv/secret-ledge-data-dir";

fn batch() -> Bytes {
    let records = vec![Record {
        timestamp: 1_000_000,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
    }];
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

// Goal: the messages of errors a client triggers when the disk fails (a module upload whose
// file cannot be written, a produce whose append fails, a topic whose creation cannot be
// recorded) never contain the data directory's path (the node's log keeps it). Method: each
// fault is injected just before its request; the request must fail (so the message is an
// error built from a disk error) and its text must not name the data directory.
#[test]
fn disk_errors_answer_clients_without_server_paths() {
    runtime().block_on(async {
        let disk = SimDisk::new(5);
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        .unwrap();
        let mut messages = Vec::new();

        disk.fail_next_write_to(".wasm.tmp", libc::EIO);
        let upload = broker
            .upload_module(UploadModuleRequest {
                name: "m".into(),
                kind: crate::wasm::PluginKind::Filter,
                module: Bytes::from(Wat::default().module()),
                params: vec![],
            })
            .await;
        assert_ne!(upload.error, ErrorCode::None, "the module store failed");
        messages.push(("upload", upload.message));

        broker
            .registry
            .create_topic("t", 1, &Default::default())
            .await
            .unwrap();
        disk.fail_next_write_to(".log", libc::EIO);
        let produced = produce(&broker, "t", 0, batch(), Acks::All).await;
        assert_ne!(produced.error, ErrorCode::None, "the append failed");
        messages.push(("produce", produced.message));

        disk.fail_next_write(libc::EIO);
        let Response::CreateTopics(created) = broker
            .handle(Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: "u".into(),
                    partitions: 1,
                    replication_factor: None,
                    configs: vec![],
                }],
                validate_only: false,
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_ne!(created.topics[0].error, ErrorCode::None, "creation failed");
        messages.push(("create topic", created.topics[0].message.clone()));

        for (request, message) in messages {
            assert!(!message.is_empty(), "{request}: an empty message");
            assert!(
                !message.contains(DATA) && !message.contains("secret-ledge"),
                "{request}: {message}"
            );
        }
    });
}

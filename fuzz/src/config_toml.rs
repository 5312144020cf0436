//! `config_toml`: the node's config file (`ledge_node::config::NodeConfig::from_toml`). An
//! operator writes it, but a node that starts from a file a tool generated or a disk damaged
//! must refuse it with a message, never panic: a panic at start is a node that never starts,
//! with nothing said about which key is wrong.
//!
//! The input is the file's text (lossy UTF-8: the node reads the file as UTF-8 and refuses
//! anything else before parsing).
//!
//! Oracles besides "no panic": every refusal names the file (the message starts with the
//! origin); parsing is deterministic (the same text gives the same config or
//! the same message); an accepted config keeps the relations the node relies on (a
//! connection's share of bytes in flight within the node's, at least one connection).

use ledge_node::config::NodeConfig;

/// The origin errors must name.
pub const ORIGIN: &str = "fuzz.toml";

/// Runs one input; panics when an oracle fails.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = NodeConfig::from_toml(&text, ORIGIN);
    let second = NodeConfig::from_toml(&text, ORIGIN);
    match (first, second) {
        (Err(first), Err(second)) => {
            let message = first.to_string();
            assert_eq!(message, second.to_string(), "refusals are deterministic");
            assert!(
                message.starts_with(ORIGIN),
                "a refusal names the file: {message:?}"
            );
        }
        (Ok(first), Ok(second)) => {
            assert_eq!(
                format!("{first:?}"),
                format!("{second:?}"),
                "parsing is deterministic"
            );
            let limits = &first.transport;
            assert!(limits.in_flight_bytes_per_connection_max <= limits.in_flight_bytes_max);
            assert!(limits.connections_max >= 1);
        }
        _ => panic!("the same text was accepted once and refused once"),
    }
}

/// The config files shipped with the project and the examples in the docs' key tables: what
/// the fuzzer mutates from, so every section is reached.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [
        include_str!("../../configs/edge.toml"),
        include_str!("../../configs/retention-compaction.toml"),
        include_str!("../../configs/single-node.toml"),
        include_str!("../../configs/stream-app.toml"),
        "",
        "[node]\nlisten = \"127.0.0.1:9092\"\ndata_dir = \"d\"\n",
        "[limits]\nconnections_max = 10\nin_flight_bytes_max = 536870912\nin_flight_bytes_per_connection_max = 67108864\n",
        "[kafka]\nlisten = \"off\"\ntls_listen = \"127.0.0.1:9093\"\n",
        "[[topic]]\nname = \"orders\"\npartitions = 3\n[topic.config]\n\"retention.ms\" = \"86400000\"\n",
    ]
    .into_iter()
    .map(|text| text.as_bytes().to_vec())
    .collect();
    seeds.dedup();
    seeds
}

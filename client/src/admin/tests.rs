//! Admin unit tests: the WASM plug-in types' names, and how the node's transform
//! descriptions and refusals become SDK values and errors.

use ledge_protocol::wire::PartitionOffset;

use super::*;

fn described(name: &str) -> wire::TransformDescription {
    wire::TransformDescription {
        name: name.into(),
        error: ErrorCode::None,
        kind: PluginKind::Filter,
        input: "orders".into(),
        output: "orders.high-value".into(),
        dead_letter_topic: "high-value.dead-letter".into(),
        on_error: OnError::DeadLetter,
        module_hash: "ab".repeat(32),
        params: vec![PluginParam {
            key: "threshold".into(),
            value: "1000".into(),
        }],
        version: 2,
        state: "running".into(),
        last_error: String::new(),
        records_in: 10,
        records_out: 4,
        records_dead: 1,
        lag: 7,
        busy_us: 1500,
        positions: vec![
            PartitionOffset {
                partition: 1,
                offset: 5,
            },
            PartitionOffset {
                partition: 0,
                offset: 3,
            },
        ],
        partitions: Vec::new(),
        state_partitions: 3,
        state_partitions_ready: 2,
        state_bytes: 640,
        restore_records: 9,
        window: None,
        windows_open: 0,
        records_late: 0,
    }
}

/// Every kind's name parses back to it; `-` stands for `_`; an unknown name lists the valid
/// ones.
#[test]
fn module_kinds_round_trip_through_their_names() {
    for kind in PluginKind::ALL {
        assert_eq!(kind.as_str().parse::<PluginKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert_eq!("filter-map".parse(), Ok(PluginKind::FilterMap));
    assert_eq!("flat_map".parse(), Ok(PluginKind::FlatMap));
    let error = "reducer".parse::<PluginKind>().unwrap_err().to_string();
    assert!(error.contains("\"reducer\""), "{error}");
    assert!(
        error.contains("filter, map, filter_map, flat_map, partitioner"),
        "{error}"
    );
}

/// The policies and states use the node's names, and nothing else parses.
#[test]
fn error_policies_and_states_use_the_node_names() {
    for policy in [OnError::DeadLetter, OnError::Skip, OnError::Stop] {
        assert_eq!(policy.as_str().parse::<OnError>(), Ok(policy));
    }
    assert_eq!("dead_letter".parse(), Ok(OnError::DeadLetter));
    assert_eq!(OnError::default(), OnError::DeadLetter);
    assert!(
        "retry"
            .parse::<OnError>()
            .unwrap_err()
            .to_string()
            .contains("skip")
    );
    for state in [
        TransformState::Failed,
        TransformState::Paused,
        TransformState::Running,
    ] {
        assert_eq!(state.as_str().parse::<TransformState>(), Ok(state));
    }
    assert!("starting".parse::<TransformState>().is_err());
}

/// A spec without an output or dead-letter topic leaves them to the node, and says what the
/// node will call the output.
#[test]
fn a_transform_spec_defaults_to_the_node_topic_names() {
    let spec = TransformSpec::new("high-value", PluginKind::Filter, vec![0u8; 4], "orders")
        .param("threshold", "1000");
    assert_eq!(spec.output, None);
    assert_eq!(spec.dead_letter_topic, None);
    assert_eq!(spec.on_error, OnError::DeadLetter);
    assert_eq!(spec.output_or_default(), "orders.high-value");
    assert_eq!(spec.params, vec![("threshold".into(), "1000".into())]);
    let spec = spec
        .output("big-orders")
        .on_error(OnError::Stop)
        .dead_letter_topic("dlq");
    assert_eq!(spec.output_or_default(), "big-orders");
    assert_eq!(spec.dead_letter_topic.as_deref(), Some("dlq"));
}

/// Every field of the node's description arrives typed: busy time as a duration, positions
/// by partition, an empty last error as `None`.
#[test]
fn transform_descriptions_become_typed() {
    let description = transform_description(described("high-value")).unwrap();
    assert_eq!(description.name, "high-value");
    assert_eq!(description.kind, PluginKind::Filter);
    assert_eq!(description.on_error, OnError::DeadLetter);
    assert_eq!(description.state, TransformState::Running);
    assert_eq!(description.version, 2);
    assert_eq!(description.last_error, None);
    assert_eq!(description.busy, Duration::from_micros(1500));
    assert_eq!(
        (
            description.state_partitions,
            description.state_partitions_ready,
            description.state_bytes,
            description.restore_records
        ),
        (3, 2, 640, 9)
    );
    assert_eq!(
        description.positions,
        BTreeMap::from([(0, 3), (1, 5)]),
        "sorted by partition"
    );
    assert_eq!(
        description.params,
        vec![("threshold".to_string(), "1000".to_string())]
    );
    assert_eq!(
        (
            description.records_in,
            description.records_out,
            description.records_dead,
            description.lag
        ),
        (10, 4, 1, 7)
    );

    let mut paused = described("high-value");
    paused.state = "paused".into();
    paused.last_error = "paused by an operator".into();
    let description = transform_description(paused).unwrap();
    assert_eq!(description.state, TransformState::Paused);
    assert_eq!(
        description.last_error.as_deref(),
        Some("paused by an operator")
    );
}

/// An unknown name is the node's refusal with its explanation kept whole; a state this client
/// does not know is a malformed answer, not a guess.
#[test]
fn refused_and_malformed_descriptions_are_errors() {
    let unknown = wire::TransformDescription {
        name: "absent".into(),
        error: ErrorCode::ModuleNotFound,
        last_error: "no transform named \"absent\"".into(),
        ..wire::TransformDescription::default()
    };
    let error = transform_description(unknown).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ModuleNotFound));
    assert_eq!(
        error.to_string(),
        "transform absent: no transform named \"absent\" (ModuleNotFound)"
    );

    let mut odd = described("t");
    odd.state = "starting".into();
    let error = transform_description(odd).unwrap_err();
    assert!(
        matches!(
            error,
            AdminError::Request(RequestError::MalformedResponse(_))
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"starting\""), "{error}");
}

/// Module refusals name the module and keep the node's message verbatim.
#[test]
fn module_errors_keep_the_node_message() {
    let error = AdminError::Module {
        name: "vip".into(),
        code: ErrorCode::ModuleInUse,
        message: "module \"vip\" is used by topic(s) orders".into(),
    };
    assert_eq!(
        error.to_string(),
        "module vip: module \"vip\" is used by topic(s) orders (ModuleInUse)"
    );
    assert_eq!(error.code(), Some(ErrorCode::ModuleInUse));
    let bare = AdminError::Module {
        name: "vip".into(),
        code: ErrorCode::ModuleNotFound,
        message: String::new(),
    };
    assert_eq!(bare.to_string(), "module vip: ModuleNotFound");
}

/// Parameters keep their order and may have empty values.
#[test]
fn parameters_convert_both_ways() {
    let pairs = vec![
        ("b".to_string(), "2".to_string()),
        ("a".to_string(), String::new()),
    ];
    let wire = plugin_params(pairs.clone());
    assert_eq!(wire[0].key, "b");
    assert_eq!(wire[1].value, "");
    assert_eq!(param_pairs(wire), pairs);
}

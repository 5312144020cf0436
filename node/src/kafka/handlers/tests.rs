use super::*;

#[test]
fn host_and_port_split() {
    assert_eq!(split_host_port("127.0.0.1:9092"), (text("127.0.0.1"), 9092));
    assert_eq!(split_host_port("[::1]:9092"), (text("::1"), 9092));
    assert_eq!(split_host_port("example"), (text("example"), -1));
}

#[test]
fn topic_ids_convert() {
    assert_eq!(topic_uuid(""), uuid::Uuid::nil());
    assert_eq!(topic_uuid("zz"), uuid::Uuid::nil());
    let id = "0123456789abcdef0123456789abcdef";
    assert_eq!(topic_uuid(id).as_u128(), 0x0123456789abcdef0123456789abcdef);
}

// Goal: Kafka clients see a topic id for every topic: the controller's in a cluster, and on a
// node without one an id derived from the name that is stable, never nil, and differs
// between names.
#[test]
fn topics_without_a_controller_id_get_a_stable_derived_one() {
    let id = "0123456789abcdef0123456789abcdef";
    assert_eq!(kafka_topic_id(id, "orders"), topic_uuid(id));
    let orders = kafka_topic_id("", "orders");
    assert_ne!(orders, uuid::Uuid::nil());
    assert_eq!(orders, kafka_topic_id("", "orders"));
    assert_ne!(orders, kafka_topic_id("", "orders2"));
    assert_ne!(kafka_topic_id("", ""), uuid::Uuid::nil());
    assert!(kafka_topic_id("", "").as_u128() >> 64 != 0);
}

// Goal: another node is listed at the Kafka listener it registered, of the kind the request
// came in on; a node registered without its listeners (an old record) at its QUIC address
// on TCP for plaintext and not at all for TLS; a node without the listener kind (no TLS
// listener, or its plaintext one off) not at all.
#[test]
fn other_nodes_are_listed_at_their_registered_kafka_listeners() {
    let registered = BTreeMap::from([
        (
            2,
            Some(KafkaListeners {
                plaintext: Some("10.0.0.2:19092".to_owned()),
                tls: Some("broker2.example:19093".to_owned()),
            }),
        ),
        (3, None),
        (
            4,
            Some(KafkaListeners {
                plaintext: Some("10.0.0.4:9092".to_owned()),
                tls: None,
            }),
        ),
        (
            5,
            Some(KafkaListeners {
                plaintext: None,
                tls: Some("broker5.example:9093".to_owned()),
            }),
        ),
    ]);
    let plaintext = NodeAddresses {
        own: "10.0.0.1:29092",
        kind: ListenerKind::Plaintext,
        registered: &registered,
    };
    let tls = NodeAddresses {
        own: "10.0.0.1:29093",
        kind: ListenerKind::Tls,
        registered: &registered,
    };
    assert_eq!(
        plaintext.kafka_address(1, 1, "10.0.0.1:9092"),
        Some((text("10.0.0.1"), 29092))
    );
    assert_eq!(
        plaintext.kafka_address(1, 2, "10.0.0.2:9092"),
        Some((text("10.0.0.2"), 19092))
    );
    assert_eq!(
        tls.kafka_address(1, 2, "10.0.0.2:9092"),
        Some((text("broker2.example"), 19093))
    );
    assert_eq!(
        plaintext.kafka_address(1, 3, "10.0.0.3:9092"),
        Some((text("10.0.0.3"), 9092))
    );
    assert_eq!(tls.kafka_address(1, 3, "10.0.0.3:9092"), None);
    assert_eq!(tls.kafka_address(1, 4, "10.0.0.4:9092"), None);
    assert_eq!(plaintext.kafka_address(1, 5, "10.0.0.5:9092"), None);
    assert_eq!(
        tls.kafka_address(1, 5, "10.0.0.5:9092"),
        Some((text("broker5.example"), 9093))
    );
    assert_eq!(
        tls.kafka_address(1, 1, "10.0.0.1:9092"),
        Some((text("10.0.0.1"), 29093))
    );
}

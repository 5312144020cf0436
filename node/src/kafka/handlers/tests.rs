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

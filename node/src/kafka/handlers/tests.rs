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

//! `consumer_protocol`: the Kafka consumer protocol as the node reads it
//! (`ledge_node::groups::consumer_protocol`): the subscription in a JoinGroup member's
//! metadata and the assignment a SyncGroup leader hands out. Both are decoded by hand in the
//! node (the generated decoder sized arrays from the wire before the vendor patch); the
//! generated decoder of `kafka-protocol`, which follows Kafka's schema, is the reference.
//!
//! Oracles, for the input read as a subscription and as an assignment:
//! - Differential: where the generated decoder reads the input (at its version, capped at the
//!   newest the schema has) and no partition is negative, the node's decoder reads it too, to
//!   the same topics and partitions.
//! - Where the node's decoder reads a subscription, the generated decoder does too at the
//!   versions the node reads (0-1), except for a negative user-data length other than -1, which
//!   the node reads as null as Kafka's Java reader does. (An assignment is read only as far as
//!   its partitions, so the user data after them is not checked by the node.)
//! - Round trip: what the node decoded, encoded by the node (`encode_subscription`,
//!   `encode_assignment`), decodes to the same value with both decoders.

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Decodable;
use ledge_node::groups::consumer_protocol::{
    ConsumerSubscription, decode_assignment, decode_subscription, encode_assignment,
    encode_subscription,
};

/// The newest version of both messages in Kafka's schema.
const SCHEMA_VERSION_MAX: i16 = 3;

/// Runs one input.
pub fn run(data: &[u8]) {
    check_subscription(data);
    check_assignment(data);
}

fn version_of(data: &[u8]) -> Option<i16> {
    let version = i16::from_be_bytes([*data.first()?, *data.get(1)?]);
    (version >= 0).then_some(version)
}

/// The generated decoder at `version` over the bytes after the version.
fn generated<T: Decodable>(data: &[u8], version: i16) -> Result<T, String> {
    let mut body = Bytes::copy_from_slice(data.get(2..).unwrap_or_default());
    T::decode(&mut body, version).map_err(|error| error.to_string())
}

fn subscription_of(generated: &ConsumerProtocolSubscription) -> Option<ConsumerSubscription> {
    let mut owned = BTreeSet::new();
    for topic in &generated.owned_partitions {
        for &partition in &topic.partitions {
            owned.insert((topic.topic.0.to_string(), u32::try_from(partition).ok()?));
        }
    }
    Some(ConsumerSubscription {
        topics: generated.topics.iter().map(ToString::to_string).collect(),
        owned,
    })
}

fn partitions_of(generated: &ConsumerProtocolAssignment) -> Option<BTreeSet<(String, u32)>> {
    let mut partitions = BTreeSet::new();
    for topic in &generated.assigned_partitions {
        for &partition in &topic.partitions {
            partitions.insert((topic.topic.0.to_string(), u32::try_from(partition).ok()?));
        }
    }
    Some(partitions)
}

/// The generated decoder's refusal of a negative user-data length other than -1, which Kafka's
/// Java reader (and the node) take as null.
fn is_negative_user_data(error: &str) -> bool {
    error.contains("Data length is negative")
}

fn check_subscription(data: &[u8]) {
    let ours = decode_subscription(data);
    if let Err(error) = &ours {
        let _ = error.to_string();
    }
    let Some(version) = version_of(data) else {
        assert!(
            ours.is_err(),
            "a subscription without a valid version was read"
        );
        return;
    };
    if let Ok(reference) =
        generated::<ConsumerProtocolSubscription>(data, version.min(SCHEMA_VERSION_MAX))
        && let Some(expected) = subscription_of(&reference)
    {
        assert_eq!(
            ours.as_ref().ok(),
            Some(&expected),
            "the node's subscription decoder disagrees with Kafka's schema: {:?}",
            ours.as_ref().err()
        );
    }
    let Ok(ours) = ours else {
        return;
    };
    match generated::<ConsumerProtocolSubscription>(data, version.min(1)) {
        Ok(reference) => assert_eq!(subscription_of(&reference).as_ref(), Some(&ours)),
        Err(error) => assert!(
            is_negative_user_data(&error),
            "the node read a subscription Kafka's schema refuses: {error}"
        ),
    }
    let encoded = encode_subscription(&ours);
    let again = decode_subscription(&encoded).expect("an encoded subscription decodes");
    assert_eq!(again, ours, "subscription round trip");
    let reference = generated::<ConsumerProtocolSubscription>(&encoded, 1)
        .expect("an encoded subscription follows the schema");
    assert_eq!(subscription_of(&reference), Some(ours));
}

fn check_assignment(data: &[u8]) {
    let ours = decode_assignment(data);
    if let Err(error) = &ours {
        let _ = error.to_string();
    }
    let Some(version) = version_of(data) else {
        assert!(
            ours.is_err(),
            "an assignment without a valid version was read"
        );
        return;
    };
    if let Ok(reference) =
        generated::<ConsumerProtocolAssignment>(data, version.min(SCHEMA_VERSION_MAX))
        && let Some(expected) = partitions_of(&reference)
    {
        assert_eq!(
            ours.as_ref().ok(),
            Some(&expected),
            "the node's assignment decoder disagrees with Kafka's schema: {:?}",
            ours.as_ref().err()
        );
    }
    let Ok(ours) = ours else {
        return;
    };
    // The node reads only the partitions, which come first in every version, so the user
    // data after them may be missing or malformed; the partitions must still be the schema's.
    let encoded = encode_assignment(&ours);
    assert_eq!(
        decode_assignment(&encoded).ok().as_ref(),
        Some(&ours),
        "assignment round trip"
    );
    let reference = generated::<ConsumerProtocolAssignment>(&encoded, 0)
        .expect("an encoded assignment follows the schema");
    assert_eq!(partitions_of(&reference), Some(ours));
}

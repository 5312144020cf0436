//! Kafka's embedded consumer protocol (pure): the subscription a consumer puts in its
//! JoinGroup metadata and the assignment a SyncGroup hands back, for the places the node
//! itself must read or write them: a classic member of a KIP-848 group (the node computes
//! its assignment), DescribeGroups (KIP-848 groups in Kafka's shape, classic groups on QUIC),
//! OffsetDelete's subscribed-topic check.
//!
//! Both are decoded here by hand rather than with `kafka-protocol`'s generated
//! decoder: that decoder sizes each array from its claimed length before reading it
//! (`Vec::with_capacity(n)`), so five hostile bytes could ask for gigabytes and abort the node.
//! Here every count is bounded by the bytes that remain. Encoding uses the generated types.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::assignor::TopicPartition;

/// The protocol type of Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The assignment version written: 0 is read by every consumer (kafka-python included).
const ASSIGNMENT_VERSION: i16 = 0;

/// What a consumer's JoinGroup metadata says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerSubscription {
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Partitions the consumer still owns (version 1+; cooperative rebalancing).
    pub owned: BTreeSet<TopicPartition>,
}

/// Why a consumer's metadata could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed consumer protocol subscription: {0}")]
pub struct SubscriptionError(&'static str);

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], SubscriptionError> {
        if count > self.bytes.len() {
            return Err(SubscriptionError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, SubscriptionError> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn i32(&mut self) -> Result<i32, SubscriptionError> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A count, refused when even the smallest elements (`element_bytes_min` each) could not
    /// fit in what remains.
    fn count(&mut self, element_bytes_min: usize) -> Result<usize, SubscriptionError> {
        let count = self.i32()?;
        let count = usize::try_from(count).map_err(|_| SubscriptionError("negative count"))?;
        if count.saturating_mul(element_bytes_min) > self.bytes.len() {
            return Err(SubscriptionError("count larger than the bytes that follow"));
        }
        Ok(count)
    }

    fn string(&mut self) -> Result<String, SubscriptionError> {
        let length = usize::try_from(self.i16()?).map_err(|_| SubscriptionError("null string"))?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| SubscriptionError("string is not UTF-8"))
    }

    fn skip_bytes(&mut self) -> Result<(), SubscriptionError> {
        let length = self.i32()?;
        if length >= 0 {
            self.take(usize::try_from(length).unwrap_or(usize::MAX))?;
        }
        Ok(())
    }
}

/// Reads a consumer's subscription (versions 0-3; later versions are read as far as 3
/// defines, as Kafka's readers do, since fields are only ever appended).
pub fn decode_subscription(metadata: &[u8]) -> Result<ConsumerSubscription, SubscriptionError> {
    let mut reader = Reader { bytes: metadata };
    let version = reader.i16()?;
    if version < 0 {
        return Err(SubscriptionError("negative version"));
    }
    let mut subscription = ConsumerSubscription::default();
    for _ in 0..reader.count(2)? {
        subscription.topics.push(reader.string()?);
    }
    reader.skip_bytes()?;
    if version >= 1 {
        for _ in 0..reader.count(6)? {
            let topic = reader.string()?;
            for _ in 0..reader.count(4)? {
                let partition = u32::try_from(reader.i32()?)
                    .map_err(|_| SubscriptionError("negative partition"))?;
                subscription.owned.insert((topic.clone(), partition));
            }
        }
    }
    Ok(subscription)
}

/// Reads a consumer assignment (any version: the partitions come first in every one).
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeSet<TopicPartition>, SubscriptionError> {
    let mut reader = Reader { bytes };
    if reader.i16()? < 0 {
        return Err(SubscriptionError("negative version"));
    }
    let mut partitions = BTreeSet::new();
    for _ in 0..reader.count(6)? {
        let topic = reader.string()?;
        for _ in 0..reader.count(4)? {
            let partition = u32::try_from(reader.i32()?)
                .map_err(|_| SubscriptionError("negative partition"))?;
            partitions.insert((topic.clone(), partition));
        }
    }
    Ok(partitions)
}

/// Writes a consumer subscription (version 1, with owned partitions), as a consumer would.
pub fn encode_subscription(subscription: &ConsumerSubscription) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    put_count(&mut out, subscription.topics.len());
    for topic in &subscription.topics {
        put_string(&mut out, topic);
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    let owned = by_topic(&subscription.owned);
    put_count(&mut out, owned.len());
    for (topic, partitions) in owned {
        put_string(&mut out, &topic);
        put_count(&mut out, partitions.len());
        for partition in partitions {
            out.extend_from_slice(&partition.to_be_bytes());
        }
    }
    out.freeze()
}

/// Writes an assignment as SyncGroup hands it to a consumer.
pub fn encode_assignment(partitions: &BTreeSet<TopicPartition>) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic(partitions)
            .into_iter()
            .map(|(topic, partitions)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.extend_from_slice(&ASSIGNMENT_VERSION.to_be_bytes());
    // Encoding a value built here cannot fail: version 0 is supported and every length fits
    // (topic names are at most 249 bytes, counts are bounded by the node's partition limits).
    if assignment.encode(&mut out, ASSIGNMENT_VERSION).is_err() {
        out.truncate(0);
    }
    out.freeze()
}

fn by_topic(partitions: &BTreeSet<TopicPartition>) -> Vec<(String, Vec<i32>)> {
    let mut grouped: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        let partition = i32::try_from(*partition).unwrap_or(i32::MAX);
        match grouped.last_mut() {
            Some((last, list)) if last == topic => list.push(partition),
            _ => grouped.push((topic.clone(), vec![partition])),
        }
    }
    grouped
}

fn put_count(out: &mut BytesMut, count: usize) {
    out.extend_from_slice(&i32::try_from(count).unwrap_or(i32::MAX).to_be_bytes());
}

fn put_string(out: &mut BytesMut, text: &str) {
    let length = i16::try_from(text.len()).unwrap_or(i16::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(text.as_bytes().get(..length as usize).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
    use kafka_protocol::protocol::Decodable;

    use super::*;

    // Goal: what a Java or Python consumer writes (the generated encoder, versions 0-3) reads
    // back to its topics and owned partitions; what the node writes decodes with the
    // generated decoder.
    #[test]
    fn subscriptions_and_assignments_round_trip_with_the_generated_codec() {
        for version in 0..=3i16 {
            let subscription = ConsumerProtocolSubscription::default()
                .with_topics(vec![StrBytes::from_static_str("orders")])
                .with_user_data(Some(Bytes::from_static(b"streams")))
                .with_owned_partitions(vec![
                    OwnedTopic::default()
                        .with_topic(TopicName(StrBytes::from_static_str("orders")))
                        .with_partitions(vec![0, 2]),
                ]);
            let mut bytes = BytesMut::new();
            bytes.extend_from_slice(&version.to_be_bytes());
            subscription.encode(&mut bytes, version).unwrap();
            let decoded = decode_subscription(&bytes).unwrap();
            assert_eq!(decoded.topics, vec!["orders".to_string()]);
            let owned: BTreeSet<TopicPartition> = if version >= 1 {
                [("orders".to_string(), 0), ("orders".to_string(), 2)].into()
            } else {
                BTreeSet::new()
            };
            assert_eq!(decoded.owned, owned);
        }
        let mine = ConsumerSubscription {
            topics: vec!["a".into()],
            owned: [("a".to_string(), 1)].into(),
        };
        assert_eq!(decode_subscription(&encode_subscription(&mine)), Ok(mine));
        let assigned: BTreeSet<TopicPartition> = [
            ("a".to_string(), 0),
            ("a".to_string(), 3),
            ("b".to_string(), 1),
        ]
        .into();
        assert_eq!(
            decode_assignment(&encode_assignment(&assigned)),
            Ok(assigned.clone())
        );
        let mut bytes = encode_assignment(&assigned);
        let version = i16::from_be_bytes([bytes[0], bytes[1]]);
        let _ = bytes.split_to(2);
        let decoded = ConsumerProtocolAssignment::decode(&mut bytes, version).unwrap();
        let round: BTreeSet<TopicPartition> = decoded
            .assigned_partitions
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.topic.to_string(), *partition as u32))
            })
            .collect();
        assert_eq!(round, assigned);
    }

    // Goal: hostile metadata never panics or allocates by a claimed count: truncations,
    // negative and huge counts, bad UTF-8 and random bytes are refused (or read) safely.
    #[test]
    fn malformed_subscriptions_are_refused_without_panicking() {
        let good = encode_subscription(&ConsumerSubscription {
            topics: vec!["topic".into()],
            owned: [("topic".to_string(), 4)].into(),
        });
        for cut in 0..good.len() {
            assert!(decode_subscription(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Version 1, then a topic count of i32::MAX with nothing behind it.
        assert_eq!(
            decode_subscription(&[0, 1, 0x7f, 0xff, 0xff, 0xff]),
            Err(SubscriptionError("count larger than the bytes that follow"))
        );
        assert!(decode_subscription(&[0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_subscription(&[0, 0, 0, 0, 0, 1, 0, 2, 0xff, 0xfe]).is_err());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for length in 0..2_000usize {
            let bytes: Vec<u8> = (0..length % 64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_subscription(&bytes);
            let _ = decode_assignment(&bytes);
        }
    }
}

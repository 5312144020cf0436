//! Produce and InitProducerId over the node's produce path: the batches go to the broker as
//! the raw bytes the client sent (record batch v2 only; magic 0/1, bad CRCs and lying record
//! counts are refused there as on QUIC), so `acks`, idempotence (the producer's sequence
//! window, a retried duplicate answered with its original offsets), produce filters,
//! partitioners and replication all apply.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
    produce_response,
};
use ledge_protocol::wire::{self, Acks};

use super::{ask, message, text, topic_name};
use crate::broker::Broker;
use crate::broker::sequencing::SequencingHold;
use crate::kafka::authorize::{Decisions, cluster_allows_silently};
use crate::kafka::errors::{NONE, kafka_code, produce_code};
use crate::security::access::Access;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};
use crate::storage::Disk;

/// What a produce comes to.
#[derive(Debug)]
pub enum Produced {
    /// The answer (acks 1 or -1).
    Answered(ProduceResponse),
    /// Nothing to send back: acks=0.
    Unanswered,
    /// acks=0 and a partition was denied: Kafka closes the connection (the client has no
    /// other way to learn its records were refused).
    Close,
}

/// A produce's acks as the node's; `None` for a value Kafka refuses.
fn acks(value: i16) -> Option<Acks> {
    match value {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    }
}

/// Bytes of a batch before its `magic` byte, and of the fields before its length counts.
const MAGIC_AT: usize = 16;
const LENGTH_AT: usize = 8;
const LOG_OVERHEAD: usize = 12;

/// Whether a batch in `records` has a magic byte other than 2: a message set of Kafka
/// before 0.11, which Kafka answers INVALID_RECORD on Produce v3+ (a client would retry
/// the node's CORRUPT_MESSAGE in vain). Framing errors are left to the node's checks.
fn old_format(records: &[u8]) -> bool {
    let mut position = 0usize;
    while let Some(magic) = records.get(position + MAGIC_AT) {
        if *magic != 2 {
            return true;
        }
        let Some(length) = records
            .get(position + LENGTH_AT..position + LOG_OVERHEAD)
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .and_then(|bytes| usize::try_from(i32::from_be_bytes(bytes)).ok())
        else {
            return false;
        };
        position = position.saturating_add(LOG_OVERHEAD).saturating_add(length);
    }
    false
}

/// Where one requested partition's answer comes from.
enum Outcome {
    /// Refused here, before the broker: this code and message.
    Refused(i16, &'static str),
    /// The broker's answer.
    Broker,
}

/// Produce; [`Produced::Unanswered`] for acks=0, which Kafka does not answer. `sequencing`
/// is dropped once every batch is queued in its partition's writer or refused (see
/// [`sequencing`](crate::broker::sequencing)): the connection starts its next produce then.
///
/// Authorization (Kafka's `handleProduceRequest`): Write on each topic, nothing else (no
/// IdempotentWrite on the cluster since KIP-679); a denied topic's partitions are
/// TOPIC_AUTHORIZATION_FAILED before their existence is looked at, and are not written. A
/// transactional id is checked for Write (and refused anyway: the node has no
/// transactions). With acks=0 a denial closes the connection, as on Kafka.
pub async fn produce<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: ProduceRequest,
    version: i16,
    sequencing: SequencingHold,
) -> Produced {
    let answered = request.acks != 0;
    let mut denied_any = false;
    if let Some(id) = &request.transactional_id {
        denied_any |= !access.allows(
            AclOperation::Write,
            ResourceType::TransactionalId,
            id.0.as_str(),
        );
    }
    let mut write = Decisions::new(access, AclOperation::Write, ResourceType::Topic);
    // Checked once for the whole request, answered per partition as Kafka does.
    let refusal = match (acks(request.acks), &request.transactional_id) {
        (None, _) => Some((
            ResponseError::InvalidRequiredAcks.code(),
            "acks must be 0, 1 or -1",
        )),
        (Some(_), Some(_)) => Some((
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            "transactions are not supported by this node",
        )),
        (Some(_), None) => None,
    };
    let mut plan = Vec::new();
    let mut native = wire::ProduceRequest {
        acks: acks(request.acks).unwrap_or_default(),
        timeout_ms: u32::try_from(request.timeout_ms).unwrap_or(0),
        topics: Vec::new(),
    };
    for topic in &request.topic_data {
        let mut partitions = Vec::new();
        let mut outcomes = Vec::new();
        let topic_denied = !write.allows(topic.name.0.as_str());
        denied_any |= topic_denied;
        for partition in &topic.partition_data {
            let index = u32::try_from(partition.index).ok();
            let outcome = match (refusal, index, &partition.records) {
                (Some((code, text)), _, _) => Outcome::Refused(code, text),
                (None, _, _) if topic_denied => Outcome::Refused(
                    ResponseError::TopicAuthorizationFailed.code(),
                    "Topic authorization failed.",
                ),
                (None, None, _) => Outcome::Refused(
                    ResponseError::UnknownTopicOrPartition.code(),
                    "negative partition index",
                ),
                (None, Some(_), None) => Outcome::Refused(
                    ResponseError::CorruptMessage.code(),
                    "null records: a produce carries record batches",
                ),
                (None, Some(_), Some(records)) if old_format(records) => Outcome::Refused(
                    ResponseError::InvalidRecord.code(),
                    "only record batch v2 (magic 2) is accepted",
                ),
                (None, Some(index), Some(records)) => {
                    partitions.push(wire::ProducePartition {
                        partition: index,
                        // Kafka's produce carries no leader epoch; the leader checks its own.
                        current_leader_epoch: None,
                        records: records.clone(),
                    });
                    Outcome::Broker
                }
            };
            outcomes.push((partition.index, outcome));
        }
        if !partitions.is_empty() {
            native.topics.push(wire::ProduceTopic {
                name: topic_name(&topic.name),
                partitions,
            });
        }
        plan.push((topic.name.clone(), outcomes));
    }
    let native_topics = if native.topics.is_empty() {
        Vec::new()
    } else {
        broker.produce_sequenced(native, sequencing).await.topics
    };
    if !answered {
        return if denied_any {
            Produced::Close
        } else {
            Produced::Unanswered
        };
    }
    // The broker answers the topics and partitions it was given, in order.
    let mut native_topics = native_topics.into_iter();
    let mut response = ProduceResponse::default();
    for (name, outcomes) in plan {
        let mut answers = if outcomes
            .iter()
            .any(|(_, outcome)| matches!(outcome, Outcome::Broker))
        {
            native_topics
                .next()
                .map(|topic| topic.partitions)
                .unwrap_or_default()
                .into_iter()
        } else {
            Vec::new().into_iter()
        };
        let mut topic = produce_response::TopicProduceResponse::default();
        topic.name = name;
        for (index, outcome) in outcomes {
            let mut partition = produce_response::PartitionProduceResponse::default();
            partition.index = index;
            partition.base_offset = -1;
            partition.log_append_time_ms = -1;
            partition.log_start_offset = -1;
            match outcome {
                Outcome::Refused(code, reason) => {
                    partition.error_code = code;
                    if version >= 8 {
                        partition.error_message = Some(text(reason));
                    }
                }
                Outcome::Broker => match answers.next() {
                    Some(answer) => {
                        partition.error_code = produce_code(answer.error);
                        partition.base_offset = answer.base_offset;
                        partition.log_append_time_ms = answer.log_append_time_ms;
                        partition.log_start_offset = answer.log_start_offset;
                        if version >= 8 {
                            partition.error_message = message(&answer.message);
                        }
                    }
                    None => {
                        // The broker answers every partition it is given; were one
                        // missing, its batch may or may not be written: a retriable error.
                        partition.error_code = ResponseError::KafkaStorageError.code();
                    }
                },
            }
            topic.partition_responses.push(partition);
        }
        response.responses.push(topic);
    }
    Produced::Answered(response)
}

/// InitProducerId for an idempotent producer: a fresh producer id and epoch 0. A
/// transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients
/// report as fatal at once (transactions are not supported; a retriable code would have
/// them retry forever).
///
/// Authorization (Kafka's `handleInitProducerIdRequest`): with a transactional id, Write on
/// it; without, IdempotentWrite on the cluster or Write on at least one topic, else
/// CLUSTER_AUTHORIZATION_FAILED.
pub async fn init_producer_id<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    match request.transactional_id.as_ref().map(|id| id.0.as_str()) {
        Some(id) if !access.allows(AclOperation::Write, ResourceType::TransactionalId, id) => {
            response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return response;
        }
        None if !cluster_allows_silently(access, AclOperation::IdempotentWrite)
            && !access.allows_on_some(AclOperation::Write, ResourceType::Topic) =>
        {
            // Neither check logs (Kafka's); the denial is logged once, as the cluster's.
            let _ = access.check(
                AclOperation::IdempotentWrite,
                ResourceType::Cluster,
                CLUSTER_NAME,
            );
            response.error_code = ResponseError::ClusterAuthorizationFailed.code();
            return response;
        }
        None => {}
        // Kafka's answer to an empty transactional id.
        Some("") => {
            response.error_code = ResponseError::InvalidRequest.code();
            return response;
        }
        Some(_) => {
            response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return response;
        }
    }
    match ask!(
        broker,
        "",
        InitProducerId(wire::InitProducerIdRequest {
            transactional_id: None
        })
    ) {
        Ok(native) => {
            response.error_code = kafka_code(native.error);
            if response.error_code == NONE {
                response.producer_id = ProducerId(native.producer_id);
                response.producer_epoch = native.producer_epoch;
            }
        }
        Err(api) => {
            tracing::error!(
                ?api,
                "kafka init producer id: the broker answered another API"
            );
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    response
}

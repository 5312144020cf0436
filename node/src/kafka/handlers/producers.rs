//! DescribeProducers (61): the idempotent producers each partition remembers, from its
//! leader's producer table (`storage/producers.rs`), as Kafka's `kafka-transactions
//! describe-producers` and the admin client's `describeProducers` read them. Answered by the
//! partition's leader only (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka does). The node has
//! no transactions, so every producer's coordinator epoch and transaction start are Kafka's
//! "none" (-1).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, describe_producers_response,
};

use super::{message, topic_name};
use crate::broker::Broker;
use crate::kafka::authorize::Decisions;
use crate::kafka::errors::kafka_code;
use crate::security::access::Access;
use crate::security::acl::{AclOperation, ResourceType};
use crate::storage::Disk;

/// Kafka's "no transaction coordinator epoch" and "no open transaction".
const NO_COORDINATOR_EPOCH: i32 = -1;
const NO_TRANSACTION_START_OFFSET: i64 = -1;

/// DescribeProducers (v0). Authorization (Kafka's `handleDescribeProducersRequest`): Read
/// (not Describe) on each topic; a denied topic's partitions are TOPIC_AUTHORIZATION_FAILED,
/// before their existence is looked at.
pub async fn describe_producers<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    let mut read = Decisions::new(access, AclOperation::Read, ResourceType::Topic);
    for topic in request.topics {
        let name = topic_name(&topic.name);
        let denied = !read.allows(&name);
        let mut result = describe_producers_response::TopicResponse::default();
        result.name = topic.name;
        for index in topic.partition_indexes {
            let mut answer = describe_producers_response::PartitionResponse::default();
            answer.partition_index = index;
            if denied {
                answer.error_code = ResponseError::TopicAuthorizationFailed.code();
                result.partitions.push(answer);
                continue;
            }
            let Ok(partition) = u32::try_from(index) else {
                answer.error_code = ResponseError::UnknownTopicOrPartition.code();
                result.partitions.push(answer);
                continue;
            };
            match broker.describe_producers(&name, partition).await {
                Err((code, text)) => {
                    answer.error_code = kafka_code(code);
                    answer.error_message = message(&text);
                }
                Ok(producers) => {
                    answer.active_producers = producers
                        .into_iter()
                        .map(|producer| {
                            let mut state = describe_producers_response::ProducerState::default();
                            state.producer_id = ProducerId(producer.producer_id);
                            state.producer_epoch = i32::from(producer.producer_epoch);
                            state.last_sequence = producer.last_sequence;
                            state.last_timestamp = producer.last_timestamp;
                            state.coordinator_epoch = NO_COORDINATOR_EPOCH;
                            state.current_txn_start_offset = NO_TRANSACTION_START_OFFSET;
                            state
                        })
                        .collect();
                }
            }
            result.partitions.push(answer);
        }
        response.topics.push(result);
    }
    response
}

//! The node's wire error codes as Kafka's: the one place where they are converted, chosen
//! so that Kafka clients retry, refresh metadata or give up as they would against Kafka.
//!
//! Service errors became [`ErrorCode`]s in `broker/dispatch.rs`; this table only renames
//! them. Where Kafka has no such error, the nearest code with the same client reaction is
//! used (say, a full disk: KAFKA_STORAGE_ERROR, retriable, as Kafka answers for a failed log
//! directory). A produce is never answered UNKNOWN_SERVER_ERROR (clients treat it as fatal
//! for the batch without knowing whether it was written): [`produce_code`].

use kafka_protocol::ResponseError;
use ledge_protocol::wire::ErrorCode;

use super::fetch_sessions::FetchSessionError;

/// No error.
pub const NONE: i16 = 0;

/// Kafka's code for one of the node's.
pub fn kafka_code(code: ErrorCode) -> i16 {
    let kafka = match code {
        ErrorCode::None => return NONE,
        ErrorCode::CorruptMessage => ResponseError::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        ErrorCode::InvalidTopic | ErrorCode::InternalTopic => ResponseError::InvalidTopicException,
        ErrorCode::TopicAlreadyExists | ErrorCode::TransformAlreadyExists => {
            ResponseError::TopicAlreadyExists
        }
        ErrorCode::InvalidPartitions => ResponseError::InvalidPartitions,
        ErrorCode::InvalidConfig
        | ErrorCode::InvalidModule
        | ErrorCode::ModuleNotFound
        | ErrorCode::TransformNotFound => ResponseError::InvalidConfig,
        ErrorCode::MessageTooLarge | ErrorCode::FrameTooLarge => ResponseError::MessageTooLarge,
        ErrorCode::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        // Kafka has no "too busy" answer for data requests; a timeout is retried the same way.
        ErrorCode::RequestTimedOut | ErrorCode::TooManyRequests => ResponseError::RequestTimedOut,
        ErrorCode::UnsupportedVersion | ErrorCode::UnknownApiKey => {
            ResponseError::UnsupportedVersion
        }
        ErrorCode::InvalidRequest => ResponseError::InvalidRequest,
        ErrorCode::OutOfOrderSequenceNumber => ResponseError::OutOfOrderSequenceNumber,
        ErrorCode::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        ErrorCode::UnknownProducerId => ResponseError::UnknownProducerId,
        // A log the node cannot write or read now: Kafka's answer for a failed log directory,
        // which clients retry (after a metadata refresh).
        ErrorCode::StorageError
        | ErrorCode::PartitionOffline
        | ErrorCode::DiskFull
        | ErrorCode::DataDamaged => ResponseError::KafkaStorageError,
        ErrorCode::InvalidRequiredAcks => ResponseError::InvalidRequiredAcks,
        // Clients refresh metadata and go to another replica (or this one once restarted).
        ErrorCode::ShuttingDown | ErrorCode::NotLeaderOrFollower => {
            ResponseError::NotLeaderOrFollower
        }
        ErrorCode::LeaderNotAvailable => ResponseError::LeaderNotAvailable,
        ErrorCode::OffsetNotAvailable => ResponseError::OffsetNotAvailable,
        ErrorCode::InvalidGroupId => ResponseError::InvalidGroupId,
        ErrorCode::GroupIdNotFound => ResponseError::GroupIdNotFound,
        ErrorCode::UnknownMemberId => ResponseError::UnknownMemberId,
        ErrorCode::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        ErrorCode::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        ErrorCode::NonEmptyGroup => ResponseError::NonEmptyGroup,
        ErrorCode::PartitionNotAssigned => ResponseError::IllegalGeneration,
        ErrorCode::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        ErrorCode::InvalidRegularExpression => ResponseError::InvalidRegularExpression,
        ErrorCode::FencedInstanceId => ResponseError::FencedInstanceId,
        // A produce filter refused the records, or they do not match their batch header:
        // the same bytes fail again.
        ErrorCode::InvalidRecord | ErrorCode::ModuleFailed => ResponseError::InvalidRecord,
        ErrorCode::ModuleInUse | ErrorCode::TopicInUse | ErrorCode::NodeInUse => {
            ResponseError::PolicyViolation
        }
        ErrorCode::InvalidTimestamp => ResponseError::InvalidTimestamp,
        ErrorCode::UnacceptableCredential => ResponseError::UnacceptableCredential,
        ErrorCode::UnsupportedSaslMechanism => ResponseError::UnsupportedSaslMechanism,
        ErrorCode::ResourceNotFound => ResponseError::ResourceNotFound,
        ErrorCode::DuplicateResource => ResponseError::DuplicateResource,
        ErrorCode::PolicyViolation => ResponseError::PolicyViolation,
        ErrorCode::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
        ErrorCode::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        ErrorCode::InvalidReplicationFactor => ResponseError::InvalidReplicationFactor,
        ErrorCode::StaleNodeEpoch => ResponseError::StaleBrokerEpoch,
        ErrorCode::NotController => ResponseError::NotController,
        ErrorCode::NotCoordinator => ResponseError::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        ErrorCode::InvalidReplicaAssignment => ResponseError::InvalidReplicaAssignment,
        ErrorCode::ReassignmentInProgress => ResponseError::ReassignmentInProgress,
        ErrorCode::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
        ErrorCode::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
        // A module or transform has no Kafka twin; the refusal is the cluster's as far as a
        // Kafka client can tell (not retriable, an authorization error).
        ErrorCode::ClusterAuthorizationFailed | ErrorCode::ResourceAuthorizationFailed => {
            ResponseError::ClusterAuthorizationFailed
        }
        ErrorCode::TransactionalIdAuthorizationFailed => {
            ResponseError::TransactionalIdAuthorizationFailed
        }
        // UnknownServerError, and codes added to the node after this table.
        _ => ResponseError::UnknownServerError,
    };
    kafka.code()
}

/// Kafka's code for a produce outcome: as [`kafka_code`], but an unclassified failure is a
/// retriable storage error, never UNKNOWN_SERVER_ERROR. An idempotent producer's retry is
/// not written twice, so retrying is safe.
pub fn produce_code(code: ErrorCode) -> i16 {
    match kafka_code(code) {
        code if code == ResponseError::UnknownServerError.code() => {
            ResponseError::KafkaStorageError.code()
        }
        code => code,
    }
}

/// Kafka's top-level Fetch code for a refused session (KIP-227). Clients react to each by
/// starting over with a full fetch.
pub fn fetch_session_code(error: FetchSessionError) -> i16 {
    match error {
        FetchSessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
        FetchSessionError::SessionIdNotFound => ResponseError::FetchSessionIdNotFound,
        FetchSessionError::TopicIdMismatch => ResponseError::FetchSessionTopicIdError,
    }
    .code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_never_answers_unknown_server_error() {
        let unknown = ResponseError::UnknownServerError.code();
        for number in 0..=u16::from(u8::MAX) {
            assert_ne!(
                produce_code(ErrorCode::from_u16(number)),
                unknown,
                "{number}"
            );
        }
    }

    #[test]
    fn retriable_node_codes_stay_retriable() {
        // A code the node calls retriable must not become one Kafka clients give up on.
        for number in 1..=u16::from(u8::MAX) {
            let code = ErrorCode::from_u16(number);
            if code.is_retriable() && code != ErrorCode::CorruptMessage {
                let kafka = kafka_code(code);
                let retriable =
                    ResponseError::try_from_code(kafka).is_some_and(|error| error.is_retriable());
                assert!(retriable, "{code} became {kafka}");
            }
        }
    }

    #[test]
    fn leadership_codes_are_kafkas() {
        assert_eq!(kafka_code(ErrorCode::NotLeaderOrFollower), 6);
        assert_eq!(kafka_code(ErrorCode::FencedLeaderEpoch), 74);
        assert_eq!(kafka_code(ErrorCode::UnknownLeaderEpoch), 75);
        assert_eq!(kafka_code(ErrorCode::NotEnoughReplicas), 19);
        assert_eq!(kafka_code(ErrorCode::OutOfOrderSequenceNumber), 45);
        assert_eq!(kafka_code(ErrorCode::None), NONE);
    }

    #[test]
    fn authorization_codes_are_kafkas() {
        assert_eq!(kafka_code(ErrorCode::TopicAuthorizationFailed), 29);
        assert_eq!(kafka_code(ErrorCode::GroupAuthorizationFailed), 30);
        assert_eq!(kafka_code(ErrorCode::ClusterAuthorizationFailed), 31);
        assert_eq!(kafka_code(ErrorCode::ResourceAuthorizationFailed), 31);
        assert_eq!(
            kafka_code(ErrorCode::TransactionalIdAuthorizationFailed),
            53
        );
    }

    #[test]
    fn fetch_session_codes_are_kafkas() {
        assert_eq!(fetch_session_code(FetchSessionError::SessionIdNotFound), 70);
        assert_eq!(fetch_session_code(FetchSessionError::InvalidEpoch), 71);
        assert_eq!(fetch_session_code(FetchSessionError::TopicIdMismatch), 106);
    }
}

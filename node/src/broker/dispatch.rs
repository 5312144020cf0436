//! Where the broker's services meet the wire: each service's error enum becomes a wire
//! [`ErrorCode`] (and the message sent beside it) here and nowhere else.

use ledge_protocol::wire::{ErrorCode, TopicResult};

use super::registry::{
    AlterTopicError, CreateTopicError, DeleteTopicError, LookupError, PartitionCountError,
    ProducerIdError,
};

/// The code for a topic or partition that cannot be used.
pub(super) fn lookup_code(error: &LookupError) -> ErrorCode {
    match error {
        LookupError::UnknownTopic { .. } | LookupError::UnknownPartition { .. } => {
            ErrorCode::UnknownTopicOrPartition
        }
        LookupError::Offline { .. } => ErrorCode::PartitionOffline,
    }
}

fn partition_count_code(_: &PartitionCountError) -> ErrorCode {
    ErrorCode::InvalidPartitions
}

/// The code and message for a topic that was not created.
pub(super) fn create_topic_wire(error: &CreateTopicError) -> (ErrorCode, String) {
    let code = match error {
        CreateTopicError::InvalidName(_) | CreateTopicError::Reserved { .. } => {
            ErrorCode::InvalidTopic
        }
        CreateTopicError::InvalidConfig(_) | CreateTopicError::ModuleReference(_) => {
            ErrorCode::InvalidConfig
        }
        CreateTopicError::AlreadyExists { .. } => ErrorCode::TopicAlreadyExists,
        CreateTopicError::PartitionCount(error) => partition_count_code(error),
        CreateTopicError::Record { source, .. } => source.error_code(),
    };
    (code, error.to_string())
}

/// The code and message for a topic whose configs were not changed.
pub(super) fn alter_topic_wire(error: &AlterTopicError) -> (ErrorCode, String) {
    let code = match error {
        AlterTopicError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        AlterTopicError::UnknownKey { .. }
        | AlterTopicError::InvalidConfig(_)
        | AlterTopicError::ModuleReference(_) => ErrorCode::InvalidConfig,
        AlterTopicError::Record { source, .. } => source.error_code(),
    };
    (code, error.to_string())
}

/// The code and message for a topic that was not deleted.
pub(super) fn delete_topic_wire(error: &DeleteTopicError) -> (ErrorCode, String) {
    let code = match error {
        DeleteTopicError::Internal { .. } => ErrorCode::InternalTopic,
        DeleteTopicError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        DeleteTopicError::InUse { .. } => ErrorCode::TopicInUse,
        DeleteTopicError::Record { source, .. } => source.error_code(),
    };
    (code, error.to_string())
}

/// The code for a producer id that was not handed out. Every cause is `StorageError`
/// (retriable) but a failed reservation, which says what the metadata store said.
pub(super) fn producer_id_code(error: &ProducerIdError) -> ErrorCode {
    match error {
        ProducerIdError::Held | ProducerIdError::Exhausted | ProducerIdError::Disk(_) => {
            ErrorCode::StorageError
        }
        ProducerIdError::Record(source) => source.error_code(),
    }
}

/// One topic's result of an admin request.
pub(super) fn topic_result(name: String, outcome: Result<(), (ErrorCode, String)>) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name,
            error: ErrorCode::None,
            message: String::new(),
        },
        Err((error, message)) => TopicResult {
            name,
            error,
            message,
        },
    }
}

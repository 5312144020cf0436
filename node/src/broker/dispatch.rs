//! Where the broker's services meet the wire: each service's error enum becomes a wire
//! [`ErrorCode`] (and the message sent beside it) here and nowhere else.

use ledge_protocol::wire::{ErrorCode, TopicResult};

use super::fetch::FetchError;
use super::produce::{PrepareError, ProduceError};
use super::registry::{
    AlterTopicError, CreateTopicError, DeleteTopicError, LookupError, PartitionCountError,
    ProducerIdError,
};
use crate::storage::{AppendError, ReadError};

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

/// The code and message for a produce to one partition that failed.
pub(super) fn produce_wire(error: &ProduceError) -> (ErrorCode, String) {
    let code = match error {
        ProduceError::InternalTopic { .. } => ErrorCode::InternalTopic,
        ProduceError::DiskFull { .. } => ErrorCode::DiskFull,
        ProduceError::Lookup(error) => lookup_code(error),
        ProduceError::NoBatches | ProduceError::MalformedBatch(_) => ErrorCode::CorruptMessage,
        ProduceError::InvalidTimestamp(_) => ErrorCode::InvalidTimestamp,
        ProduceError::Prepare(error) => prepare_code(error),
        ProduceError::Append(error) => append_code(error),
        ProduceError::Plugin { code, .. } => *code,
        ProduceError::TimedOut { .. } => ErrorCode::RequestTimedOut,
    };
    (code, error.to_string())
}

fn prepare_code(error: &PrepareError) -> ErrorCode {
    match error {
        PrepareError::Undecodable(error) => super::undecodable_batch_code(error),
        PrepareError::NoRecords | PrepareError::Reencode(_) | PrepareError::AppendTime(_) => {
            ErrorCode::CorruptMessage
        }
    }
}

fn append_code(error: &AppendError) -> ErrorCode {
    match error {
        AppendError::InvalidBatch(_) => ErrorCode::CorruptMessage,
        // Records that do not match their (intact) header: the same bytes will fail
        // again, so the code is not a retriable one.
        AppendError::InvalidRecords(_) => ErrorCode::InvalidRecord,
        AppendError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
        AppendError::Disk(disk) if disk.is_out_of_space() => ErrorCode::DiskFull,
        AppendError::Disk(_) => ErrorCode::StorageError,
        AppendError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
        AppendError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
        AppendError::UnknownProducer { .. } => ErrorCode::UnknownProducerId,
        AppendError::Fenced { .. } => ErrorCode::StorageError,
        AppendError::Closed => ErrorCode::ShuttingDown,
    }
}

/// The code and message for one partition of a fetch or list-offsets.
pub(super) fn fetch_wire(error: &FetchError) -> (ErrorCode, String) {
    let code = match error {
        FetchError::Lookup(error) => lookup_code(error),
        FetchError::Read(ReadError::OffsetOutOfRange { .. }) => ErrorCode::OffsetOutOfRange,
        FetchError::Read(ReadError::Corrupt { .. }) => ErrorCode::DataDamaged,
        FetchError::Read(_) | FetchError::OffsetLookup(_) => ErrorCode::StorageError,
        FetchError::Plugin { code, .. } => *code,
    };
    (code, error.to_string())
}

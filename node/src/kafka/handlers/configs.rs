//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs on topic configs (Kafka's
//! dotted names, the node's own topic configs). Broker resources are refused with
//! INVALID_REQUEST: the node's settings live in its config file (docs/OPERATIONS.md).
//!
//! AlterConfigs replaces a topic's whole config, as Kafka's does: keys it does not name go
//! back to their defaults. IncrementalAlterConfigs sets, deletes, appends to or subtracts
//! from single keys (APPEND and SUBTRACT on list values such as `cleanup.policy`).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    describe_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use ledge_protocol::wire::{self, ConfigEntry, ErrorCode};

use super::{ask, message, text};
use crate::broker::Broker;
use crate::kafka::errors::kafka_code;
use crate::storage::Disk;

/// Kafka's resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's config sources: set on the topic, or the default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
/// IncrementalAlterConfigs operations.
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;
const OPERATION_APPEND: i8 = 2;
const OPERATION_SUBTRACT: i8 = 3;

const NOT_A_TOPIC: &str =
    "only topic configs (resource type 2) are served; node settings are in its config file";

/// A topic's configs as the node describes them: key -> (value, is default).
type Described = BTreeMap<String, (String, bool)>;

/// Reads one topic's configs; `Err` is the Kafka code and message to answer.
async fn describe<D: Disk>(broker: &Broker<D>, topic: &str) -> Result<Described, (i16, String)> {
    let request = wire::DescribeConfigsRequest {
        topics: vec![topic.to_owned()],
    };
    let native = ask!(broker, "", DescribeConfigs(request)).map_err(|api| {
        tracing::error!(
            ?api,
            "kafka describe configs: the broker answered another API"
        );
        (ResponseError::UnknownServerError.code(), String::new())
    })?;
    let Some(described) = native.topics.into_iter().next() else {
        return Err((ResponseError::UnknownServerError.code(), String::new()));
    };
    if described.error != ErrorCode::None {
        return Err((kafka_code(described.error), described.message));
    }
    Ok(described
        .configs
        .into_iter()
        .map(|config| (config.name, (config.value, config.is_default)))
        .collect())
}

/// DescribeConfigs.
pub async fn describe_configs<D: Disk>(
    broker: &Broker<D>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    let include_synonyms = request.include_synonyms;
    for resource in request.resources {
        let mut result = describe_configs_response::DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        if resource.resource_type != RESOURCE_TOPIC {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = Some(text(NOT_A_TOPIC));
            response.results.push(result);
            continue;
        }
        match describe(broker, resource.resource_name.as_str()).await {
            Err((code, reason)) => {
                result.error_code = code;
                result.error_message = message(&reason);
            }
            Ok(described) => {
                // Null or empty asks for every key, as on Kafka.
                let wanted = resource
                    .configuration_keys
                    .as_ref()
                    .filter(|keys| !keys.is_empty());
                result.configs = described
                    .into_iter()
                    .filter(|(name, _)| {
                        wanted.is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
                    })
                    .map(|(name, (value, is_default))| {
                        let mut entry =
                            describe_configs_response::DescribeConfigsResourceResult::default();
                        entry.name = text(name);
                        entry.value = Some(text(value));
                        entry.config_source = if is_default {
                            SOURCE_DEFAULT
                        } else {
                            SOURCE_TOPIC
                        };
                        // The value's own source, first as on Kafka (`kafka-configs
                        // --describe` prints them). Kafka lists a broker-level default
                        // after it; the node's topic defaults are built in, not settings.
                        if include_synonyms {
                            let mut synonym =
                                describe_configs_response::DescribeConfigsSynonym::default();
                            synonym.name = entry.name.clone();
                            synonym.value = entry.value.clone();
                            synonym.source = entry.config_source;
                            entry.synonyms = vec![synonym];
                        }
                        entry
                    })
                    .collect();
            }
        }
        response.results.push(result);
    }
    response
}

/// Has the node apply `set` and `delete` to `topic`; the Kafka code and message.
async fn alter<D: Disk>(
    broker: &Broker<D>,
    topic: &str,
    set: BTreeMap<String, String>,
    delete: Vec<String>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let request = wire::AlterConfigsRequest {
        topics: vec![wire::AlterTopicConfigs {
            name: topic.to_owned(),
            set: set
                .into_iter()
                .map(|(name, value)| ConfigEntry { name, value })
                .collect(),
            delete,
        }],
        validate_only,
    };
    match ask!(broker, "", AlterConfigs(request)) {
        Ok(native) => match native.topics.into_iter().next() {
            Some(outcome) => (kafka_code(outcome.error), message(&outcome.message)),
            None => (ResponseError::UnknownServerError.code(), None),
        },
        Err(api) => {
            tracing::error!(?api, "kafka alter configs: the broker answered another API");
            (ResponseError::UnknownServerError.code(), None)
        }
    }
}

/// AlterConfigs: the topic's config becomes exactly the keys given.
pub async fn alter_configs<D: Disk>(
    broker: &Broker<D>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let topic = resource.resource_name.as_str();
        if resource.resource_type != RESOURCE_TOPIC {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = Some(text(NOT_A_TOPIC));
        } else {
            match describe(broker, topic).await {
                Err((code, reason)) => {
                    result.error_code = code;
                    result.error_message = message(&reason);
                }
                Ok(described) => {
                    let set: BTreeMap<String, String> = resource
                        .configs
                        .iter()
                        .filter_map(|config| {
                            let value = config.value.as_ref()?;
                            Some((config.name.as_str().to_owned(), value.as_str().to_owned()))
                        })
                        .collect();
                    let delete = described
                        .into_iter()
                        .filter(|(name, (_, is_default))| !is_default && !set.contains_key(name))
                        .map(|(name, _)| name)
                        .collect();
                    (result.error_code, result.error_message) =
                        alter(broker, topic, set, delete, request.validate_only).await;
                }
            }
        }
        response.responses.push(result);
    }
    response
}

/// The value of a list config after APPEND or SUBTRACT of `items` (comma-separated, as
/// Kafka writes lists).
fn list_operation(current: &str, items: &str, append: bool) -> String {
    let mut values: Vec<&str> = current
        .split(',')
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .collect();
    for item in items
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        if append {
            if !values.contains(&item) {
                values.push(item);
            }
        } else {
            values.retain(|value| *value != item);
        }
    }
    values.join(",")
}

/// IncrementalAlterConfigs.
pub async fn incremental_alter_configs<D: Disk>(
    broker: &Broker<D>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let mut result =
            incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let topic = resource.resource_name.as_str();
        if resource.resource_type != RESOURCE_TOPIC {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = Some(text(NOT_A_TOPIC));
            response.responses.push(result);
            continue;
        }
        let needs_current = resource.configs.iter().any(|config| {
            matches!(
                config.config_operation,
                OPERATION_APPEND | OPERATION_SUBTRACT
            )
        });
        let described = if needs_current {
            match describe(broker, topic).await {
                Ok(described) => described,
                Err((code, reason)) => {
                    result.error_code = code;
                    result.error_message = message(&reason);
                    response.responses.push(result);
                    continue;
                }
            }
        } else {
            Described::new()
        };
        let mut set = BTreeMap::new();
        let mut delete = Vec::new();
        let mut refused = None;
        for config in &resource.configs {
            let name = config.name.as_str().to_owned();
            let value = config.value.as_ref().map(|value| value.as_str());
            match (config.config_operation, value) {
                (OPERATION_SET, Some(value)) => {
                    set.insert(name, value.to_owned());
                }
                (OPERATION_DELETE, _) => delete.push(name),
                (operation @ (OPERATION_APPEND | OPERATION_SUBTRACT), Some(items)) => {
                    let current = set
                        .get(&name)
                        .cloned()
                        .or_else(|| described.get(&name).map(|(value, _)| value.clone()))
                        .unwrap_or_default();
                    let value = list_operation(&current, items, operation == OPERATION_APPEND);
                    set.insert(name, value);
                }
                (OPERATION_SET | OPERATION_APPEND | OPERATION_SUBTRACT, None) => {
                    refused = Some(format!("config {name}: a value is required"));
                }
                (operation, _) => {
                    refused = Some(format!("config {name}: unknown operation {operation}"));
                }
            }
        }
        if let Some(reason) = refused {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = Some(text(reason));
        } else {
            (result.error_code, result.error_message) =
                alter(broker, topic, set, delete, request.validate_only).await;
        }
        response.responses.push(result);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::list_operation;

    #[test]
    fn list_operations_append_once_and_subtract() {
        assert_eq!(list_operation("delete", "compact", true), "delete,compact");
        assert_eq!(
            list_operation("delete,compact", "compact", true),
            "delete,compact"
        );
        assert_eq!(list_operation("delete,compact", "delete", false), "compact");
        assert_eq!(list_operation("", "compact", true), "compact");
    }
}

//! Client quotas over Kafka's admin APIs (issue 15): DescribeClientQuotas (48) and
//! AlterClientQuotas (49), answered from the security store (`security/store.rs`) so that
//! `kafka-configs --alter --add-config producer_byte_rate=1024 --entity-type users
//! --entity-name alice` (or `--entity-default`) and `kafka-configs --describe` work.
//!
//! Ledge keeps user quotas only (`security/quota.rs`): an entity is `{user: name}` or the
//! default user `{user: null}`. Client-id and IP entities, and keys other than
//! `producer_byte_rate` and `consumer_byte_rate` (`request_percentage`,
//! `controller_mutation_rate`, `connection_creation_rate`), are refused with INVALID_REQUEST
//! and a message saying so. Values are whole bytes per second (Kafka's type for both keys
//! is `Long`).
//!
//! Authorization, as Kafka's `KafkaApis`: AlterConfigs on the cluster to alter,
//! DescribeConfigs on the cluster to describe (CLUSTER_AUTHORIZATION_FAILED otherwise).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, alter_client_quotas_response, describe_client_quotas_response,
};

use super::{message, text};
use crate::broker::Broker;
use crate::broker::dispatch::security_write_code;
use crate::kafka::errors::kafka_code;
use crate::security::access::Access;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};
use crate::security::quota::{ClientQuotas, QuotaChanges, QuotaEntity, QuotaKind, QuotaValues};
use crate::storage::Disk;

/// Kafka's entity type for users.
pub const USER_ENTITY: &str = "user";
/// Kafka's entity type for client ids (refused).
pub const CLIENT_ID_ENTITY: &str = "client-id";
/// Kafka's entity type for IP addresses (refused).
pub const IP_ENTITY: &str = "ip";
/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

/// The answer when the node has no security store.
const NO_STORE: &str = "this node has no security store";
/// Refusal of a client-id or IP entity.
const USER_ONLY: &str = "Ledge supports user quotas only (entity type \"user\", a name or the default); client-id and ip quota entities are not supported";

/// Which entity one AlterClientQuotas entry names, or why it cannot be used.
fn entity_of(
    entity: &[kafka_protocol::messages::alter_client_quotas_request::EntityData],
) -> Result<QuotaEntity, String> {
    match entity {
        [] => Err("Invalid empty client quota entity".to_owned()),
        [only] if only.entity_type.as_str() == USER_ENTITY => Ok(match &only.entity_name {
            Some(name) => QuotaEntity::User(name.as_str().to_owned()),
            None => QuotaEntity::DefaultUser,
        }),
        _ => Err(USER_ONLY.to_owned()),
    }
}

/// The changes of one entry's ops, or why they cannot be used: only the two byte-rate keys,
/// each once, with whole positive values.
fn changes_of(
    ops: &[kafka_protocol::messages::alter_client_quotas_request::OpData],
) -> Result<Vec<(QuotaKind, Option<u64>)>, String> {
    let mut changes: Vec<(QuotaKind, Option<u64>)> = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op.key.as_str();
        let Some(kind) = QuotaKind::from_key(key) else {
            return Err(format!(
                "Invalid configuration key {key}: Ledge supports producer_byte_rate and consumer_byte_rate"
            ));
        };
        if changes.iter().any(|(seen, _)| *seen == kind) {
            return Err(format!("Duplicate quota key {key} in one entity's changes"));
        }
        if op.remove {
            changes.push((kind, None));
            continue;
        }
        // Kafka's check of a Long quota: a whole number (within 1e-6).
        let value = op.value;
        let whole = value.round();
        if !value.is_finite()
            || (value - whole).abs() > 1e-6
            || whole < 1.0
            || whole > i64::MAX as f64
        {
            return Err(format!(
                "{key} must be a whole number of bytes per second from 1 to {}, not {value}",
                i64::MAX
            ));
        }
        changes.push((kind, Some(whole as u64)));
    }
    Ok(changes)
}

fn response_entity(
    entity: &[kafka_protocol::messages::alter_client_quotas_request::EntityData],
) -> Vec<alter_client_quotas_response::EntityData> {
    entity
        .iter()
        .map(|part| {
            let mut data = alter_client_quotas_response::EntityData::default();
            data.entity_type = part.entity_type.clone();
            data.entity_name = part.entity_name.clone();
            data
        })
        .collect()
}

/// AlterClientQuotas: each entry's answer is its own; with `validate_only` nothing is
/// stored. Needs AlterConfigs on the cluster.
pub async fn alter_client_quotas<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut response = AlterClientQuotasResponse::default();
    // Per entry: the entity and changes, or the error to answer.
    let mut decided: Vec<Result<(QuotaEntity, QuotaChanges), (i16, String)>> =
        Vec::with_capacity(request.entries.len());
    let denied = access
        .check(
            AclOperation::AlterConfigs,
            ResourceType::Cluster,
            CLUSTER_NAME,
        )
        .err();
    for entry in &request.entries {
        let result = if let Some(denied) = &denied {
            Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                denied.to_string(),
            ))
        } else {
            entity_of(&entry.entity)
                .and_then(|entity| changes_of(&entry.ops).map(|changes| (entity, changes)))
                .map_err(|error| (ResponseError::InvalidRequest.code(), error))
        };
        decided.push(result);
    }
    let valid: Vec<(usize, QuotaEntity, QuotaChanges)> = decided
        .iter()
        .enumerate()
        .filter_map(|(index, result)| {
            result
                .as_ref()
                .ok()
                .map(|(entity, changes)| (index, entity.clone(), changes.clone()))
        })
        .collect();
    let mut outcomes: Vec<Result<(), (i16, String)>> = decided
        .iter()
        .map(|result| result.as_ref().map(|_| ()).map_err(Clone::clone))
        .collect();
    if !valid.is_empty() {
        match broker.security_store() {
            None => {
                for (index, _, _) in &valid {
                    outcomes[*index] =
                        Err((ResponseError::SecurityDisabled.code(), NO_STORE.to_owned()));
                }
            }
            Some(store) => {
                let alterations = valid
                    .iter()
                    .map(|(_, entity, changes)| (entity.clone(), changes.clone()))
                    .collect();
                let results = store.alter_quotas(alterations, request.validate_only).await;
                for ((index, _, _), (entity, result)) in valid.iter().zip(results) {
                    let name = match &entity {
                        QuotaEntity::User(name) => name.as_str(),
                        QuotaEntity::DefaultUser => crate::security::quota::DEFAULT_ENTITY_NAME,
                    };
                    let error_text = result.as_ref().err().map(ToString::to_string);
                    if !request.validate_only {
                        access.record_change(
                            &format!("AlterClientQuotas user={name}"),
                            ResourceType::Cluster,
                            CLUSTER_NAME,
                            error_text.as_deref().map_or(Ok(()), Err),
                        );
                    }
                    outcomes[*index] = result.map_err(|error| {
                        (kafka_code(security_write_code(&error)), error.to_string())
                    });
                }
            }
        }
    }
    response.entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let mut answer = alter_client_quotas_response::EntryData::default();
            answer.entity = response_entity(&entry.entity);
            answer.error_message = None;
            if let Err((code, error)) = outcome {
                answer.error_code = code;
                answer.error_message = message(&error);
            }
            answer
        })
        .collect();
    response
}

/// One filter component, checked.
enum Match {
    /// The named user.
    Exact(String),
    /// The default user.
    Default,
    /// Every user entity.
    Any,
}

/// DescribeClientQuotas: the entities the filter matches with their values, as Kafka's
/// `ClientQuotasImage.describe`. Each entity type at most once; a filter on client-id or ip
/// matches nothing here (Ledge keeps user quotas only); `strict` keeps entities whose types
/// are exactly the filter's. Needs DescribeConfigs on the cluster.
pub fn describe_client_quotas<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: &DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let mut response = DescribeClientQuotasResponse::default();
    response.error_message = None;
    let fail = |mut response: DescribeClientQuotasResponse, code: i16, error: &str| {
        response.error_code = code;
        response.error_message = message(error);
        response.entries = None;
        response
    };
    if let Err(denied) = access.check(
        AclOperation::DescribeConfigs,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        return fail(
            response,
            ResponseError::ClusterAuthorizationFailed.code(),
            &denied.to_string(),
        );
    }
    let mut user: Option<Match> = None;
    // A component on another entity type: no user entity has it.
    let mut other_type = false;
    let mut seen: Vec<&str> = Vec::new();
    for component in &request.components {
        let entity_type = component.entity_type.as_str();
        if seen.contains(&entity_type) {
            return fail(
                response,
                ResponseError::InvalidRequest.code(),
                &format!("Entity type {entity_type} cannot appear more than once in the filter."),
            );
        }
        seen.push(entity_type);
        let matched = match (component.match_type, &component._match) {
            (MATCH_EXACT, Some(name)) => Match::Exact(name.as_str().to_owned()),
            (MATCH_EXACT, None) | (MATCH_DEFAULT, _) => Match::Default,
            (MATCH_ANY, _) => Match::Any,
            (other, _) => {
                return fail(
                    response,
                    ResponseError::InvalidRequest.code(),
                    &format!("Unknown match type {other}"),
                );
            }
        };
        if entity_type == USER_ENTITY {
            user = Some(matched);
        } else {
            other_type = true;
        }
    }
    let Some(store) = broker.security_store() else {
        return fail(response, ResponseError::SecurityDisabled.code(), NO_STORE);
    };
    let quotas = store.quotas();
    let entries = if other_type || (request.strict && user.is_none()) {
        Vec::new()
    } else {
        matching(&quotas, user.as_ref())
    };
    response.entries = Some(
        entries
            .into_iter()
            .map(|(entity, values)| describe_entry(&entity, &values))
            .collect(),
    );
    response
}

/// The entities of `quotas` a user component matches (`None`: no user component, every one).
fn matching(quotas: &ClientQuotas, user: Option<&Match>) -> Vec<(QuotaEntity, QuotaValues)> {
    quotas
        .entities()
        .into_iter()
        .filter(|(entity, _)| match (user, entity) {
            (None | Some(Match::Any), _) => true,
            (Some(Match::Default), QuotaEntity::DefaultUser) => true,
            (Some(Match::Exact(name)), QuotaEntity::User(user)) => name == user,
            _ => false,
        })
        .collect()
}

fn describe_entry(
    entity: &QuotaEntity,
    values: &QuotaValues,
) -> describe_client_quotas_response::EntryData {
    let mut entry = describe_client_quotas_response::EntryData::default();
    let mut part = describe_client_quotas_response::EntityData::default();
    part.entity_type = text(USER_ENTITY);
    part.entity_name = match entity {
        QuotaEntity::User(name) => Some(text(name.clone())),
        QuotaEntity::DefaultUser => None,
    };
    entry.entity = vec![part];
    entry.values = values
        .entries()
        .into_iter()
        .map(|(kind, value)| {
            let mut data = describe_client_quotas_response::ValueData::default();
            data.key = text(kind.key());
            data.value = value as f64;
            data
        })
        .collect();
    entry
}

#[cfg(test)]
mod tests;

//! SASL/SCRAM users and ACLs over Kafka's admin APIs (issue 15): DescribeUserScramCredentials
//! (50), AlterUserScramCredentials (51), DescribeAcls (29), CreateAcls (30), DeleteAcls (31),
//! answered from the node's security store (`security/store.rs`) with the rules, error codes
//! and messages of Kafka's `ScramControlManager`, `ScramImage` and `AclControlManager`, so
//! `kafka-configs --entity-type users` and `kafka-acls` work as against Kafka.
//!
//! AlterUserScramCredentials carries a salt and a salted password the client computed (the
//! password never travels); the node derives `StoredKey`/`ServerKey` and stores those, never
//! the salted password. Each user's answer is its own: at most one change per user per
//! request (DUPLICATE_RESOURCE otherwise), as in Kafka.
//!
//! Authorization, checked before anything else as Kafka's `AclApis` and `ControllerApis`:
//! DescribeAcls and DescribeUserScramCredentials need Describe on the cluster, CreateAcls,
//! DeleteAcls and AlterUserScramCredentials Alter on the cluster, DescribeClientQuotas
//! DescribeConfigs on the cluster; a denial is CLUSTER_AUTHORIZATION_FAILED in each
//! response's own shape. Each ACL and user changed is a recorded change. A node without a
//! security store (tests) answers SECURITY_DISABLED.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, alter_user_scram_credentials_response,
    create_acls_response, delete_acls_response, describe_acls_response,
    describe_user_scram_credentials_response,
};

use super::{message, text};
use crate::broker::Broker;
use crate::broker::dispatch::security_write_code;
use crate::kafka::authorize::{CLUSTER_DENIED, cluster_allows, record};
use crate::kafka::errors::kafka_code;
use crate::security::access::Access;
use crate::security::acl::{
    AclBinding, AclBindingFilter, AclOperation, CLUSTER_NAME, ResourceType,
};
use crate::security::records::{StoredCredential, UserAlteration, UserError, validate_iterations};
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::security::store::{SecurityStore, SecurityWriteError};
use crate::storage::Disk;

/// The answer when the node has no security store.
const NO_STORE: &str = "this node has no security store";

/// Kafka's prefix for a user described twice in one request (`ScramImage`).
const DESCRIBE_DUPLICATE_USER: &str =
    "Cannot describe SCRAM credentials for the same user twice in a single request: ";
/// Kafka's prefix for a user without credentials (`ScramImage`).
const DESCRIBE_USER_THAT_DOES_NOT_EXIST: &str =
    "Attempt to describe a user credential that does not exist: ";

fn store<D: Disk>(broker: &Broker<D>) -> Option<&SecurityStore> {
    broker.security_store().map(|store| &**store)
}

/// The Kafka code and message of a change that was not made.
fn write_error(error: &SecurityWriteError) -> (i16, String) {
    (kafka_code(security_write_code(error)), error.to_string())
}

/// The mechanism of Kafka's type byte (1: SCRAM-SHA-256, 2: SCRAM-SHA-512).
fn mechanism_of(kafka_type: i8) -> Option<ScramMechanism> {
    ScramMechanism::ALL
        .into_iter()
        .find(|mechanism| i16::from(mechanism.kafka_type()) == i16::from(kafka_type))
}

fn kafka_type(mechanism: ScramMechanism) -> i8 {
    i8::try_from(mechanism.kafka_type()).unwrap_or(0)
}

/// DescribeUserScramCredentials: every user for a null or empty list, else the named ones
/// (each at most once), with their mechanisms and iteration counts.
pub async fn describe_user_scram_credentials<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let mut response = DescribeUserScramCredentialsResponse::default();
    response.error_message = None;
    if !cluster_allows(access, AclOperation::Describe) {
        // Kafka's error response: the top-level error, and each user asked for with it
        // (the user itself left unset).
        let denied = ResponseError::ClusterAuthorizationFailed.code();
        response.error_code = denied;
        response.error_message = message(CLUSTER_DENIED);
        response.results = request
            .users
            .unwrap_or_default()
            .iter()
            .map(|_| {
                let mut result = describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default();
                result.error_code = denied;
                result.error_message = message(CLUSTER_DENIED);
                result
            })
            .collect();
        return response;
    }
    let Some(store) = store(broker) else {
        response.error_code = ResponseError::SecurityDisabled.code();
        response.error_message = message(NO_STORE);
        return response;
    };
    // Name -> asked twice.
    let mut asked: Vec<(String, bool)> = Vec::new();
    match request.users {
        Some(users) if !users.is_empty() => {
            for user in users {
                let name = user.name.as_str();
                match asked.iter_mut().find(|(asked, _)| asked == name) {
                    Some(entry) => entry.1 = true,
                    None => asked.push((name.to_owned(), false)),
                }
            }
        }
        _ => {
            asked = store
                .users()
                .into_iter()
                .map(|user| (user.name, false))
                .collect();
        }
    }
    for (name, twice) in asked {
        let mut result =
            describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default();
        result.user = text(name.clone());
        result.error_message = None;
        if twice {
            result.error_code = ResponseError::DuplicateResource.code();
            result.error_message = message(&format!("{DESCRIBE_DUPLICATE_USER}{name}"));
        } else {
            match store.user(&name) {
                Some(user) => {
                    result.credential_infos = user
                        .credentials
                        .into_iter()
                        .map(|(mechanism, iterations)| {
                            let mut info =
                                describe_user_scram_credentials_response::CredentialInfo::default();
                            info.mechanism = kafka_type(mechanism);
                            info.iterations = i32::try_from(iterations).unwrap_or(i32::MAX);
                            info
                        })
                        .collect();
                }
                None => {
                    result.error_code = ResponseError::ResourceNotFound.code();
                    result.error_message =
                        message(&format!("{DESCRIBE_USER_THAT_DOES_NOT_EXIST}{name}"));
                }
            }
        }
        response.results.push(result);
    }
    response
}

/// One upsertion's change, or why it is refused: a known mechanism, iterations in bounds,
/// and keys derived from the salted password.
fn upsertion(
    mechanism: i8,
    iterations: i32,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<UserAlteration, UserError> {
    let mechanism = mechanism_of(mechanism).ok_or(UserError::UnknownMechanism)?;
    let iterations = validate_iterations(i64::from(iterations))?;
    let credential = ScramCredential::from_salted_password(
        mechanism,
        salt.to_vec(),
        salted_password,
        iterations,
    )
    .map_err(UserError::InvalidCredential)?;
    Ok(UserAlteration::Upsert {
        mechanism,
        credential: StoredCredential::of(&credential),
    })
}

/// AlterUserScramCredentials: deletions and upsertions, one per user, each user answered
/// on its own (Kafka's `ScramControlManager.alterCredentials`).
pub async fn alter_user_scram_credentials<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut response = AlterUserScramCredentialsResponse::default();
    let allowed = cluster_allows(access, AclOperation::Alter);
    let mut answer = |user: &str, code: i16, error: &str| {
        let mut result =
            alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
        result.user = text(user);
        result.error_code = code;
        result.error_message = message(error);
        response.results.push(result);
    };
    let store = store(broker).filter(|_| allowed);
    let Some(store) = store else {
        // Denied (Kafka's error response: each distinct user, sorted, with the error), or
        // no store.
        let (code, error) = if allowed {
            (ResponseError::SecurityDisabled.code(), NO_STORE)
        } else {
            (
                ResponseError::ClusterAuthorizationFailed.code(),
                CLUSTER_DENIED,
            )
        };
        let users: BTreeSet<String> = request
            .deletions
            .iter()
            .map(|deletion| deletion.name.to_string())
            .chain(
                request
                    .upsertions
                    .iter()
                    .map(|upsertion| upsertion.name.to_string()),
            )
            .collect();
        for user in users {
            answer(&user, code, error);
        }
        return response;
    };
    // Per user, in first-seen order: the change, or the error that answers it.
    let mut order: Vec<String> = Vec::new();
    let mut changes: BTreeMap<String, Result<UserAlteration, UserError>> = BTreeMap::new();
    let mut note = |name: String, change: Result<UserAlteration, UserError>| {
        match changes.get_mut(&name) {
            // A user already refused keeps its first error (Kafka's order of checks).
            Some(Err(_)) => {}
            Some(existing) => *existing = Err(UserError::Duplicate),
            None => {
                order.push(name.clone());
                changes.insert(name, change);
            }
        }
    };
    for deletion in &request.deletions {
        let change = mechanism_of(deletion.mechanism)
            .ok_or(UserError::UnknownMechanism)
            .map(|mechanism| UserAlteration::Delete { mechanism });
        note(deletion.name.to_string(), change);
    }
    for upsert in &request.upsertions {
        let change = upsertion(
            upsert.mechanism,
            upsert.iterations,
            &upsert.salt,
            &upsert.salted_password,
        );
        note(upsert.name.to_string(), change);
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for name in order {
        match changes.remove(&name) {
            Some(Ok(change)) => accepted.push((name, change)),
            Some(Err(error)) => refused.push((name, error)),
            None => {}
        }
    }
    for (name, result) in store.alter_users(accepted).await {
        // Users are not an ACL resource: the change is the cluster's, naming the user.
        let action = format!("AlterUserScramCredentials User:{name}");
        match result {
            Ok(()) => {
                record(access, &action, ResourceType::Cluster, CLUSTER_NAME, Ok(()));
                answer(&name, 0, "");
            }
            Err(error) => {
                let (code, text) = write_error(&error);
                record(
                    access,
                    &action,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                    Err(text.clone()),
                );
                answer(&name, code, &text);
            }
        }
    }
    for (name, error) in refused {
        let (code, text) = write_error(&SecurityWriteError::from(error));
        answer(&name, code, &text);
    }
    response
}

/// CreateAcls: each creation validated (INVALID_REQUEST with the reason), the valid ones
/// stored together.
pub async fn create_acls<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let mut response = CreateAclsResponse::default();
    if !cluster_allows(access, AclOperation::Alter) {
        // Kafka's error response: every creation with the error.
        response.results = request
            .creations
            .iter()
            .map(|_| {
                let mut result = create_acls_response::AclCreationResult::default();
                result.error_code = ResponseError::ClusterAuthorizationFailed.code();
                result.error_message = message(CLUSTER_DENIED);
                result
            })
            .collect();
        return response;
    }
    let mut results: Vec<(i16, String)> = Vec::with_capacity(request.creations.len());
    let mut valid: Vec<(usize, AclBinding)> = Vec::new();
    for creation in &request.creations {
        match AclBinding::from_wire(
            creation.resource_type,
            creation.resource_name.as_str(),
            creation.resource_pattern_type,
            creation.principal.as_str(),
            creation.host.as_str(),
            creation.operation,
            creation.permission_type,
        ) {
            Ok(binding) => {
                valid.push((results.len(), binding));
                results.push((0, String::new()));
            }
            Err(error) => results.push((ResponseError::InvalidRequest.code(), error.to_string())),
        }
    }
    if !valid.is_empty() {
        let outcome = match store(broker) {
            None => Err((ResponseError::SecurityDisabled.code(), NO_STORE.to_owned())),
            Some(store) => store
                .create_acls(valid.iter().map(|(_, binding)| binding.clone()).collect())
                .await
                .map_err(|error| write_error(&error)),
        };
        if let Err(error) = &outcome {
            for (index, _) in &valid {
                results[*index] = error.clone();
            }
        }
        for (_, binding) in &valid {
            record(
                access,
                "CreateAcls",
                binding.resource_type,
                &binding.resource_name,
                outcome.clone().map_err(|(_, error)| error),
            );
        }
    }
    response.results = results
        .into_iter()
        .map(|(code, error)| {
            let mut result = create_acls_response::AclCreationResult::default();
            result.error_code = code;
            result.error_message = message(&error);
            result
        })
        .collect();
    response
}

/// A DescribeAcls/DeleteAcls filter from its wire fields.
#[allow(clippy::too_many_arguments)]
fn filter_of(
    resource_type: i8,
    resource_name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclBindingFilter, (i16, String)> {
    AclBindingFilter::from_wire(
        resource_type,
        resource_name,
        pattern_type,
        principal,
        host,
        operation,
        permission,
    )
    .map_err(|error| (ResponseError::InvalidRequest.code(), error.to_string()))
}

/// DescribeAcls: the bindings the filter matches, grouped by resource pattern.
pub async fn describe_acls<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let mut response = DescribeAclsResponse::default();
    response.error_message = None;
    if !cluster_allows(access, AclOperation::Describe) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = message(CLUSTER_DENIED);
        return response;
    }
    let filter = filter_of(
        request.resource_type_filter,
        request
            .resource_name_filter
            .as_ref()
            .map(|name| name.as_str()),
        request.pattern_type_filter,
        request.principal_filter.as_ref().map(|name| name.as_str()),
        request.host_filter.as_ref().map(|name| name.as_str()),
        request.operation,
        request.permission_type,
    );
    let filter = match (filter, store(broker)) {
        (Err((code, error)), _) => {
            response.error_code = code;
            response.error_message = message(&error);
            return response;
        }
        (Ok(_), None) => {
            response.error_code = ResponseError::SecurityDisabled.code();
            response.error_message = message(NO_STORE);
            return response;
        }
        (Ok(filter), Some(store)) => store.list_acls(&filter),
    };
    let mut resources: Vec<describe_acls_response::DescribeAclsResource> = Vec::new();
    for binding in filter {
        let same = resources.last().is_some_and(|resource| {
            resource.resource_type == binding.resource_type.code()
                && resource.resource_name.as_str() == binding.resource_name
                && resource.pattern_type == binding.pattern_type.code()
        });
        if !same {
            let mut resource = describe_acls_response::DescribeAclsResource::default();
            resource.resource_type = binding.resource_type.code();
            resource.resource_name = text(binding.resource_name.clone());
            resource.pattern_type = binding.pattern_type.code();
            resources.push(resource);
        }
        let mut acl = describe_acls_response::AclDescription::default();
        acl.principal = text(binding.principal);
        acl.host = text(binding.host);
        acl.operation = binding.operation.code();
        acl.permission_type = binding.permission.code();
        if let Some(resource) = resources.last_mut() {
            resource.acls.push(acl);
        }
    }
    response.resources = resources;
    response
}

/// DeleteAcls: per filter, the bindings it matched and removed.
pub async fn delete_acls<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let mut response = DeleteAclsResponse::default();
    if !cluster_allows(access, AclOperation::Alter) {
        // Kafka's error response: every filter with the error.
        response.filter_results = request
            .filters
            .iter()
            .map(|_| {
                let mut result = delete_acls_response::DeleteAclsFilterResult::default();
                result.error_code = ResponseError::ClusterAuthorizationFailed.code();
                result.error_message = message(CLUSTER_DENIED);
                result
            })
            .collect();
        return response;
    }
    let mut results: Vec<Result<Vec<AclBinding>, (i16, String)>> = Vec::new();
    let mut valid: Vec<(usize, AclBindingFilter)> = Vec::new();
    for filter in &request.filters {
        match filter_of(
            filter.resource_type_filter,
            filter
                .resource_name_filter
                .as_ref()
                .map(|name| name.as_str()),
            filter.pattern_type_filter,
            filter.principal_filter.as_ref().map(|name| name.as_str()),
            filter.host_filter.as_ref().map(|name| name.as_str()),
            filter.operation,
            filter.permission_type,
        ) {
            Ok(filter) => {
                valid.push((results.len(), filter));
                results.push(Ok(Vec::new()));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    if !valid.is_empty() {
        let filters: Vec<AclBindingFilter> =
            valid.iter().map(|(_, filter)| filter.clone()).collect();
        let outcome = match store(broker) {
            None => Err((ResponseError::SecurityDisabled.code(), NO_STORE.to_owned())),
            Some(store) => store
                .delete_acls(&filters)
                .await
                .map_err(|error| write_error(&error)),
        };
        match outcome {
            Ok(matched) => {
                for ((index, _), bindings) in valid.iter().zip(matched) {
                    for binding in &bindings {
                        record(
                            access,
                            "DeleteAcls",
                            binding.resource_type,
                            &binding.resource_name,
                            Ok(()),
                        );
                    }
                    results[*index] = Ok(bindings);
                }
            }
            Err(error) => {
                for (index, _) in &valid {
                    results[*index] = Err(error.clone());
                }
            }
        }
    }
    response.filter_results = results
        .into_iter()
        .map(|result| {
            let mut filter_result = delete_acls_response::DeleteAclsFilterResult::default();
            filter_result.error_message = None;
            match result {
                Ok(bindings) => {
                    filter_result.matching_acls = bindings
                        .into_iter()
                        .map(|binding| {
                            let mut acl = delete_acls_response::DeleteAclsMatchingAcl::default();
                            acl.error_message = None;
                            acl.resource_type = binding.resource_type.code();
                            acl.resource_name = text(binding.resource_name);
                            acl.pattern_type = binding.pattern_type.code();
                            acl.principal = text(binding.principal);
                            acl.host = text(binding.host);
                            acl.operation = binding.operation.code();
                            acl.permission_type = binding.permission.code();
                            acl
                        })
                        .collect();
                }
                Err((code, error)) => {
                    filter_result.error_code = code;
                    filter_result.error_message = message(&error);
                }
            }
            filter_result
        })
        .collect();
    response
}

#[cfg(test)]
pub(crate) mod tests;

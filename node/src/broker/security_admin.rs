//! The native API's SASL user and ACL requests (issue 15), answered from the security store
//! (`security/store.rs`) with the same rules as the Kafka APIs (`kafka/handlers/security.rs`):
//! one change per user per request, per-user and per-binding answers.

use ledge_protocol::wire::{
    AclBindingWire, AclFilterWire, AclResult, AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest,
    DeleteAclsResponse, DeleteAclsResult, DescribeAclsRequest, DescribeAclsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ErrorCode,
    ScramCredentialInfo, UserResult, UserScramDescription,
};

use super::Broker;
use super::dispatch::{security_refusal_code, security_write_code};
use crate::security::acl::{AclBinding, AclBindingFilter, AclError};
use crate::security::records::{
    StoredCredential, UserAlteration, UserError, acl_refusal, validate_iterations,
};
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::security::store::{SecurityStore, SecurityWriteError};
use crate::storage::Disk;

/// The message when the node has no security store (tests, the simulator).
const NO_STORE: &str = "this node has no security store";

fn acl_code(error: &AclError) -> ErrorCode {
    security_refusal_code(acl_refusal(error))
}

/// A binding in Kafka's codes.
pub(crate) fn binding_wire(binding: &AclBinding) -> AclBindingWire {
    AclBindingWire {
        resource_type: binding.resource_type.code(),
        resource_name: binding.resource_name.clone(),
        pattern_type: binding.pattern_type.code(),
        principal: binding.principal.clone(),
        host: binding.host.clone(),
        operation: binding.operation.code(),
        permission: binding.permission.code(),
    }
}

fn binding_of(wire: &AclBindingWire) -> Result<AclBinding, AclError> {
    AclBinding::from_wire(
        wire.resource_type,
        &wire.resource_name,
        wire.pattern_type,
        &wire.principal,
        &wire.host,
        wire.operation,
        wire.permission,
    )
}

fn filter_of(wire: &AclFilterWire) -> Result<AclBindingFilter, AclError> {
    AclBindingFilter::from_wire(
        wire.resource_type,
        wire.resource_name.as_deref(),
        wire.pattern_type,
        wire.principal.as_deref(),
        wire.host.as_deref(),
        wire.operation,
        wire.permission,
    )
}

fn mechanism_of(name: &str) -> Result<ScramMechanism, UserError> {
    ScramMechanism::from_name(name).ok_or(UserError::UnknownMechanism)
}

fn user_error(error: UserError) -> (ErrorCode, String) {
    let error = SecurityWriteError::from(error);
    (security_write_code(&error), error.to_string())
}

impl<D: Disk> Broker<D> {
    fn store_or_refuse(&self) -> Result<&SecurityStore, (ErrorCode, String)> {
        self.security_store()
            .map(|store| &**store)
            .ok_or_else(|| (ErrorCode::InvalidRequest, NO_STORE.to_owned()))
    }

    pub(super) async fn alter_user_scram_credentials(
        &self,
        request: AlterUserScramCredentialsRequest,
    ) -> AlterUserScramCredentialsResponse {
        let result = |name: String, (error, message): (ErrorCode, String)| UserResult {
            name,
            error,
            message,
        };
        let mut order: Vec<String> = Vec::new();
        let mut changes: Vec<(String, Result<UserAlteration, UserError>)> = Vec::new();
        let mut note = |name: String, change: Result<UserAlteration, UserError>| match changes
            .iter_mut()
            .find(|(seen, _)| *seen == name)
        {
            Some((_, Err(_))) => {}
            Some((_, existing)) => *existing = Err(UserError::Duplicate),
            None => {
                order.push(name.clone());
                changes.push((name, change));
            }
        };
        for deletion in request.deletions {
            let change = mechanism_of(&deletion.mechanism)
                .map(|mechanism| UserAlteration::Delete { mechanism });
            note(deletion.name, change);
        }
        for upsertion in request.upsertions {
            let change = mechanism_of(&upsertion.mechanism).and_then(|mechanism| {
                let iterations = validate_iterations(i64::from(upsertion.iterations))?;
                let credential = ScramCredential::from_salted_password(
                    mechanism,
                    upsertion.salt.to_vec(),
                    &upsertion.salted_password,
                    iterations,
                )
                .map_err(UserError::InvalidCredential)?;
                Ok(UserAlteration::Upsert {
                    mechanism,
                    credential: StoredCredential::of(&credential),
                })
            });
            note(upsertion.name, change);
        }
        let store = match self.store_or_refuse() {
            Ok(store) => store,
            Err(refused) => {
                let results = order
                    .into_iter()
                    .map(|name| result(name, refused.clone()))
                    .collect();
                return AlterUserScramCredentialsResponse { results };
            }
        };
        let mut accepted = Vec::new();
        let mut answers: Vec<(String, Option<(ErrorCode, String)>)> = Vec::new();
        for (name, change) in changes {
            match change {
                Ok(change) => accepted.push((name.clone(), change)),
                Err(error) => answers.push((name.clone(), Some(user_error(error)))),
            }
        }
        for (name, outcome) in store.alter_users(accepted).await {
            let answer = outcome
                .err()
                .map(|error| (security_write_code(&error), error.to_string()));
            answers.push((name, answer));
        }
        // In request order.
        let results = order
            .into_iter()
            .filter_map(|name| {
                let position = answers.iter().position(|(seen, _)| *seen == name)?;
                let (name, answer) = answers.swap_remove(position);
                Some(result(
                    name,
                    answer.unwrap_or((ErrorCode::None, String::new())),
                ))
            })
            .collect();
        AlterUserScramCredentialsResponse { results }
    }

    pub(super) fn describe_user_scram_credentials(
        &self,
        request: DescribeUserScramCredentialsRequest,
    ) -> DescribeUserScramCredentialsResponse {
        let describe = |store: &SecurityStore, name: String| match store.user(&name) {
            Some(user) => UserScramDescription {
                name,
                error: ErrorCode::None,
                message: String::new(),
                credentials: user
                    .credentials
                    .into_iter()
                    .map(|(mechanism, iterations)| ScramCredentialInfo {
                        mechanism: mechanism.name().to_owned(),
                        iterations,
                    })
                    .collect(),
            },
            None => UserScramDescription {
                message: format!("user {name:?} has no SCRAM credentials"),
                name,
                error: ErrorCode::ResourceNotFound,
                credentials: Vec::new(),
            },
        };
        let store = match self.store_or_refuse() {
            Ok(store) => store,
            Err((error, message)) => {
                let users = request
                    .users
                    .into_iter()
                    .map(|name| UserScramDescription {
                        name,
                        error,
                        message: message.clone(),
                        credentials: Vec::new(),
                    })
                    .collect();
                return DescribeUserScramCredentialsResponse { users };
            }
        };
        let names: Vec<String> = if request.users.is_empty() {
            store.users().into_iter().map(|user| user.name).collect()
        } else {
            let mut names = request.users;
            let mut seen = std::collections::BTreeSet::new();
            names.retain(|name| seen.insert(name.clone()));
            names
        };
        DescribeUserScramCredentialsResponse {
            users: names
                .into_iter()
                .map(|name| describe(store, name))
                .collect(),
        }
    }

    pub(super) async fn create_acls_request(
        &self,
        request: CreateAclsRequest,
    ) -> CreateAclsResponse {
        let mut results: Vec<AclResult> = Vec::with_capacity(request.bindings.len());
        let mut valid: Vec<(usize, AclBinding)> = Vec::new();
        for wire in &request.bindings {
            match binding_of(wire) {
                Ok(binding) => {
                    valid.push((results.len(), binding));
                    results.push(AclResult {
                        error: ErrorCode::None,
                        message: String::new(),
                    });
                }
                Err(error) => results.push(AclResult {
                    error: acl_code(&error),
                    message: error.to_string(),
                }),
            }
        }
        if !valid.is_empty() {
            let outcome = match self.store_or_refuse() {
                Err(refused) => Err(refused),
                Ok(store) => store
                    .create_acls(valid.iter().map(|(_, binding)| binding.clone()).collect())
                    .await
                    .map_err(|error| (security_write_code(&error), error.to_string())),
            };
            if let Err((error, message)) = outcome {
                for (index, _) in &valid {
                    results[*index] = AclResult {
                        error,
                        message: message.clone(),
                    };
                }
            }
        }
        CreateAclsResponse { results }
    }

    pub(super) fn describe_acls_request(
        &self,
        request: DescribeAclsRequest,
    ) -> DescribeAclsResponse {
        let refused = |(error, message): (ErrorCode, String)| DescribeAclsResponse {
            error,
            message,
            bindings: Vec::new(),
        };
        let filter = match filter_of(&request.filter) {
            Ok(filter) => filter,
            Err(error) => return refused((acl_code(&error), error.to_string())),
        };
        match self.store_or_refuse() {
            Err(error) => refused(error),
            Ok(store) => DescribeAclsResponse {
                error: ErrorCode::None,
                message: String::new(),
                bindings: store.list_acls(&filter).iter().map(binding_wire).collect(),
            },
        }
    }

    pub(super) async fn delete_acls_request(
        &self,
        request: DeleteAclsRequest,
    ) -> DeleteAclsResponse {
        let refused = |error: ErrorCode, message: String| DeleteAclsResult {
            error,
            message,
            bindings: Vec::new(),
        };
        let mut results: Vec<DeleteAclsResult> = Vec::new();
        let mut valid: Vec<(usize, AclBindingFilter)> = Vec::new();
        for wire in &request.filters {
            match filter_of(wire) {
                Ok(filter) => {
                    valid.push((results.len(), filter));
                    results.push(refused(ErrorCode::None, String::new()));
                }
                Err(error) => results.push(refused(acl_code(&error), error.to_string())),
            }
        }
        if !valid.is_empty() {
            let filters: Vec<AclBindingFilter> =
                valid.iter().map(|(_, filter)| filter.clone()).collect();
            let outcome = match self.store_or_refuse() {
                Err(refusal) => Err(refusal),
                Ok(store) => store
                    .delete_acls(&filters)
                    .await
                    .map_err(|error| (security_write_code(&error), error.to_string())),
            };
            match outcome {
                Ok(matched) => {
                    for ((index, _), bindings) in valid.iter().zip(matched) {
                        results[*index].bindings = bindings.iter().map(binding_wire).collect();
                    }
                }
                Err((error, message)) => {
                    for (index, _) in &valid {
                        results[*index] = refused(error, message.clone());
                    }
                }
            }
        }
        DeleteAclsResponse { results }
    }
}

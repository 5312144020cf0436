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

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::path::Path;
    use std::sync::Arc;

    use bytes::Bytes;
    use ledge_protocol::wire::{Request, Response, ScramDeletion, ScramUpsertion};

    use super::*;
    use crate::broker::BrokerConfig;
    use crate::clock::SimClock;
    use crate::security::acl::AuthorizerConfig;
    use crate::security::records::SecurityLimits;
    use crate::security::store::StoreMode;
    use crate::sim::SimDisk;

    async fn broker(with_store: bool) -> (Broker<SimDisk>, tempfile::TempDir) {
        let broker = Broker::open(
            SimDisk::new(9),
            Path::new("/data"),
            BrokerConfig::default(),
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        if with_store {
            let store = SecurityStore::open(
                dir.path(),
                StoreMode::OneNode,
                false,
                AuthorizerConfig::default(),
                SecurityLimits::default(),
                [1; 32],
            )
            .unwrap();
            broker.set_security_store(Arc::new(store));
        }
        (broker, dir)
    }

    fn upsertion(name: &str, mechanism: &str) -> ScramUpsertion {
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(4096).unwrap(),
            b"salt",
            b"pw",
            &mut salted,
        );
        ScramUpsertion {
            name: name.into(),
            mechanism: mechanism.into(),
            iterations: 4096,
            salt: Bytes::from_static(b"salt"),
            salted_password: Bytes::copy_from_slice(&salted),
        }
    }

    async fn alter(
        broker: &Broker<SimDisk>,
        request: AlterUserScramCredentialsRequest,
    ) -> Vec<(String, ErrorCode)> {
        let Response::AlterUserScramCredentials(response) = broker
            .handle(Request::AlterUserScramCredentials(request))
            .await
        else {
            panic!("wrong response");
        };
        response
            .results
            .into_iter()
            .map(|result| (result.name, result.error))
            .collect()
    }

    #[tokio::test]
    async fn users_are_answered_one_by_one_in_request_order() {
        // Goal: the native API applies Kafka's per-user rules: a good user is stored, a user
        // named twice is DuplicateResource, an unknown mechanism UnsupportedSaslMechanism, a
        // deletion of nothing ResourceNotFound; answers come in request order.
        let (broker, _dir) = broker(true).await;
        let request = AlterUserScramCredentialsRequest {
            deletions: vec![
                ScramDeletion {
                    name: "ghost".into(),
                    mechanism: "SCRAM-SHA-256".into(),
                },
                ScramDeletion {
                    name: "twice".into(),
                    mechanism: "SCRAM-SHA-256".into(),
                },
            ],
            upsertions: vec![
                upsertion("alice", "SCRAM-SHA-256"),
                upsertion("twice", "SCRAM-SHA-256"),
                upsertion("md5", "MD5"),
            ],
        };
        assert_eq!(
            alter(&broker, request).await,
            vec![
                ("ghost".to_owned(), ErrorCode::ResourceNotFound),
                ("twice".to_owned(), ErrorCode::DuplicateResource),
                ("alice".to_owned(), ErrorCode::None),
                ("md5".to_owned(), ErrorCode::UnsupportedSaslMechanism),
            ]
        );
        let Response::DescribeUserScramCredentials(described) = broker
            .handle(Request::DescribeUserScramCredentials(
                DescribeUserScramCredentialsRequest {
                    users: vec!["alice".into(), "nobody".into()],
                },
            ))
            .await
        else {
            panic!("wrong response");
        };
        assert_eq!(described.users[0].credentials[0].iterations, 4096);
        assert_eq!(described.users[1].error, ErrorCode::ResourceNotFound);
    }

    #[tokio::test]
    async fn acl_requests_validate_each_binding_and_filter() {
        // Goal: a bad binding is refused alone with its reason; a bad filter is refused; a
        // delete answers what it removed.
        let (broker, _dir) = broker(true).await;
        let good = AclBindingWire {
            resource_type: 2,
            resource_name: "orders".into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission: 3,
        };
        let bad = AclBindingWire {
            resource_type: 4,
            resource_name: "not-the-cluster".into(),
            ..good.clone()
        };
        let Response::CreateAcls(created) = broker
            .handle(Request::CreateAcls(CreateAclsRequest {
                bindings: vec![good.clone(), bad],
            }))
            .await
        else {
            panic!("wrong response");
        };
        assert_eq!(created.results[0].error, ErrorCode::None);
        assert_eq!(created.results[1].error, ErrorCode::InvalidRequest);
        assert!(created.results[1].message.contains("kafka-cluster"));
        let any = AclFilterWire {
            resource_type: 1,
            resource_name: None,
            pattern_type: 1,
            principal: None,
            host: None,
            operation: 1,
            permission: 1,
        };
        let unknown = AclFilterWire {
            operation: 0,
            ..any.clone()
        };
        let Response::DescribeAcls(described) = broker
            .handle(Request::DescribeAcls(DescribeAclsRequest {
                filter: unknown,
            }))
            .await
        else {
            panic!("wrong response");
        };
        assert_eq!(described.error, ErrorCode::InvalidRequest);
        let Response::DeleteAcls(deleted) = broker
            .handle(Request::DeleteAcls(DeleteAclsRequest {
                filters: vec![any],
            }))
            .await
        else {
            panic!("wrong response");
        };
        assert_eq!(deleted.results[0].bindings, vec![good]);
    }

    #[tokio::test]
    async fn without_a_store_every_user_is_refused() {
        // Goal: no store is never a silent success.
        let (broker, _dir) = broker(false).await;
        let request = AlterUserScramCredentialsRequest {
            deletions: Vec::new(),
            upsertions: vec![upsertion("alice", "SCRAM-SHA-256")],
        };
        assert_eq!(
            alter(&broker, request).await,
            vec![("alice".to_owned(), ErrorCode::InvalidRequest)]
        );
    }
}

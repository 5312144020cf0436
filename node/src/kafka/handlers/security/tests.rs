//! The five security APIs against a real broker (simulated disk) with a security store in a
//! temporary directory, with `kafka-protocol`'s request types, as `kafka-configs` and
//! `kafka-acls` send them.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;

use super::*;
use crate::broker::BrokerConfig;
use crate::clock::SimClock;
use crate::kafka::authorize::unrestricted as open;
use crate::security::acl::AuthorizerConfig;
use crate::security::acl::{AclOperation, AclPermission, PatternType, ResourceType};
use crate::security::records::SecurityLimits;
use crate::security::store::StoreMode;
use crate::sim::SimDisk;

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SECURITY_DISABLED: i16 = 54;
const INVALID_REQUEST: i16 = 42;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

async fn broker(with_store: bool) -> (Broker<SimDisk>, tempfile::TempDir) {
    broker_with(with_store.then(AuthorizerConfig::default)).await
}

/// A broker on the simulated disk with, for `Some(config)`, a security store in a temporary
/// directory whose authorizer has `config` (super users...); the directory lives as long as
/// the second value.
pub(crate) async fn broker_with(
    authorizer: Option<AuthorizerConfig>,
) -> (Broker<SimDisk>, tempfile::TempDir) {
    let broker = Broker::open(
        SimDisk::new(5),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    if let Some(authorizer) = authorizer {
        let store = SecurityStore::open(
            dir.path(),
            StoreMode::OneNode,
            false,
            authorizer,
            SecurityLimits::default(),
            [3; 32],
        )
        .unwrap();
        broker.set_security_store(Arc::new(store));
    }
    (broker, dir)
}

/// What a Kafka client sends: `Hi(password, salt, iterations)` with SHA-256.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations).unwrap(),
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

fn upsertion(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
    let mut upsertion = ScramCredentialUpsertion::default();
    upsertion.name = text(name);
    upsertion.mechanism = mechanism;
    upsertion.iterations = iterations;
    upsertion.salt = bytes::Bytes::from_static(b"kafka-salt");
    upsertion.salted_password = salted_password(
        "alice-secret",
        b"kafka-salt",
        u32::try_from(iterations).unwrap_or(4096).clamp(1, 20_000),
    )
    .into();
    upsertion
}

fn deletion(name: &str, mechanism: i8) -> ScramCredentialDeletion {
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = text(name);
    deletion.mechanism = mechanism;
    deletion
}

fn codes(response: &AlterUserScramCredentialsResponse) -> Vec<(String, i16)> {
    let mut codes: Vec<(String, i16)> = response
        .results
        .iter()
        .map(|result| (result.user.to_string(), result.error_code))
        .collect();
    codes.sort();
    codes
}

#[tokio::test]
async fn an_upserted_user_is_described_and_its_keys_match_the_password() {
    // Goal: the node stores keys derived from the client's salted password, which are the
    // keys the password itself gives (so SCRAM authentication will accept it), and
    // describes the user by mechanism and iterations only.
    let (broker, _dir) = broker(true).await;
    let mut request = AlterUserScramCredentialsRequest::default();
    request.upsertions.push(upsertion("alice", 1, 8192));
    let response = alter_user_scram_credentials(&broker, &open(), request).await;
    assert_eq!(codes(&response), vec![("alice".to_owned(), 0)]);
    let stored = broker
        .security_store()
        .unwrap()
        .scram_credential("alice", ScramMechanism::Sha256)
        .unwrap();
    let expected =
        ScramCredential::new(ScramMechanism::Sha256, "alice-secret", b"kafka-salt", 8192).unwrap();
    assert_eq!(stored, expected);

    let response = describe_user_scram_credentials(
        &broker,
        &open(),
        DescribeUserScramCredentialsRequest::default(),
    )
    .await;
    assert_eq!(response.error_code, 0);
    let [result] = response.results.as_slice() else {
        panic!("one user: {response:?}");
    };
    assert_eq!(result.user.as_str(), "alice");
    let infos: Vec<(i8, i32)> = result
        .credential_infos
        .iter()
        .map(|info| (info.mechanism, info.iterations))
        .collect();
    assert_eq!(infos, vec![(1, 8192)]);
}

#[tokio::test]
async fn alterations_are_refused_with_kafkas_codes_per_user() {
    // Goal: each refusal carries Kafka's code and message, and only for its own user.
    let (broker, _dir) = broker(true).await;
    let mut request = AlterUserScramCredentialsRequest::default();
    request.deletions.push(deletion("twice", 1));
    request.upsertions.push(upsertion("twice", 1, 4096));
    request.upsertions.push(upsertion("few", 1, 100));
    request.upsertions.push(upsertion("many", 1, 20_000));
    request.upsertions.push(upsertion("", 1, 4096));
    request.upsertions.push(upsertion("md5", 9, 4096));
    request.deletions.push(deletion("ghost", 2));
    request.upsertions.push(upsertion("good", 1, 4096));
    let response = alter_user_scram_credentials(&broker, &open(), request).await;
    assert_eq!(
        codes(&response),
        vec![
            (String::new(), UNACCEPTABLE_CREDENTIAL),
            ("few".to_owned(), UNACCEPTABLE_CREDENTIAL),
            ("ghost".to_owned(), RESOURCE_NOT_FOUND),
            ("good".to_owned(), 0),
            ("many".to_owned(), UNACCEPTABLE_CREDENTIAL),
            ("md5".to_owned(), UNSUPPORTED_SASL_MECHANISM),
            ("twice".to_owned(), DUPLICATE_RESOURCE),
        ]
    );
    let message_of = |user: &str| {
        response
            .results
            .iter()
            .find(|result| result.user.as_str() == user)
            .and_then(|result| result.error_message.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    assert!(message_of("few").starts_with("Too few iterations"));
    assert_eq!(
        message_of("twice"),
        "A user credential cannot be altered twice in the same request"
    );
    assert_eq!(
        message_of("ghost"),
        "Attempt to delete a user credential that does not exist"
    );
    assert_eq!(message_of(""), "Username must not be empty");
    assert_eq!(broker.security_store().unwrap().users().len(), 1);
}

#[tokio::test]
async fn describing_unknown_and_repeated_users_answers_per_user() {
    // Goal: Kafka's RESOURCE_NOT_FOUND and DUPLICATE_RESOURCE with the user named.
    let (broker, _dir) = broker(true).await;
    let mut request = DescribeUserScramCredentialsRequest::default();
    let name = |name: &str| {
        let mut user = UserName::default();
        user.name = text(name);
        user
    };
    request.users = Some(vec![name("nobody"), name("dup"), name("dup")]);
    let response = describe_user_scram_credentials(&broker, &open(), request).await;
    let results: Vec<(String, i16, String)> = response
        .results
        .iter()
        .map(|result| {
            (
                result.user.to_string(),
                result.error_code,
                result
                    .error_message
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        results,
        vec![
            (
                "nobody".to_owned(),
                RESOURCE_NOT_FOUND,
                "Attempt to describe a user credential that does not exist: nobody".to_owned()
            ),
            (
                "dup".to_owned(),
                DUPLICATE_RESOURCE,
                "Cannot describe SCRAM credentials for the same user twice in a single request: dup"
                    .to_owned()
            ),
        ]
    );
}

fn creation(principal: &str, topic: &str) -> AclCreation {
    let mut creation = AclCreation::default();
    creation.resource_type = ResourceType::Topic.code();
    creation.resource_name = text(topic);
    creation.resource_pattern_type = PatternType::Literal.code();
    creation.principal = text(principal);
    creation.host = text("*");
    creation.operation = AclOperation::Read.code();
    creation.permission_type = AclPermission::Allow.code();
    creation
}

#[tokio::test]
async fn acls_are_created_described_and_deleted() {
    // Goal: kafka-acls' three requests: a bad creation is refused alone; describe groups by
    // resource; delete answers what each filter removed; a bad filter is INVALID_REQUEST.
    let (broker, _dir) = broker(true).await;
    let mut request = CreateAclsRequest::default();
    request.creations = vec![
        creation("User:alice", "orders"),
        creation("alice", "orders"),
        creation("User:bob", "orders"),
    ];
    let response = create_acls(&broker, &open(), request).await;
    let created: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    assert_eq!(created, vec![0, INVALID_REQUEST, 0]);
    assert_eq!(
        response.results[1]
            .error_message
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("principal 'alice' is not of the form Type:name")
    );

    let mut describe = DescribeAclsRequest::default();
    describe.resource_type_filter = 1; // ANY
    describe.pattern_type_filter = 1; // ANY
    describe.operation = 1;
    describe.permission_type = 1;
    describe.resource_name_filter = None;
    describe.principal_filter = None;
    describe.host_filter = None;
    let described = describe_acls(&broker, &open(), describe.clone()).await;
    assert_eq!(described.error_code, 0);
    let [resource] = described.resources.as_slice() else {
        panic!("one resource: {described:?}");
    };
    assert_eq!(resource.resource_name.as_str(), "orders");
    let principals: Vec<&str> = resource
        .acls
        .iter()
        .map(|acl| acl.principal.as_str())
        .collect();
    assert_eq!(principals, vec!["User:alice", "User:bob"]);

    let mut delete = DeleteAclsRequest::default();
    let mut filter = DeleteAclsFilter::default();
    filter.resource_type_filter = 1;
    filter.pattern_type_filter = 1;
    filter.operation = 1;
    filter.permission_type = 1;
    filter.principal_filter = Some(text("User:bob"));
    filter.resource_name_filter = None;
    filter.host_filter = None;
    let mut bad = filter.clone();
    bad.operation = 0; // UNKNOWN
    delete.filters = vec![filter, bad];
    let deleted = delete_acls(&broker, &open(), delete).await;
    assert_eq!(deleted.filter_results[0].error_code, 0);
    let removed: Vec<&str> = deleted.filter_results[0]
        .matching_acls
        .iter()
        .map(|acl| acl.principal.as_str())
        .collect();
    assert_eq!(removed, vec!["User:bob"]);
    assert_eq!(deleted.filter_results[1].error_code, INVALID_REQUEST);

    let described = describe_acls(&broker, &open(), describe).await;
    assert_eq!(described.resources[0].acls.len(), 1);
}

#[tokio::test]
async fn a_node_without_a_store_answers_security_disabled() {
    // Goal: no store means Kafka's SECURITY_DISABLED, never a silent success.
    let (broker, _dir) = broker(false).await;
    let mut request = AlterUserScramCredentialsRequest::default();
    request.upsertions.push(upsertion("alice", 1, 4096));
    let response = alter_user_scram_credentials(&broker, &open(), request).await;
    assert_eq!(
        codes(&response),
        vec![("alice".to_owned(), SECURITY_DISABLED)]
    );
    let mut request = CreateAclsRequest::default();
    request.creations = vec![creation("User:alice", "orders")];
    let response = create_acls(&broker, &open(), request).await;
    assert_eq!(response.results[0].error_code, SECURITY_DISABLED);
}

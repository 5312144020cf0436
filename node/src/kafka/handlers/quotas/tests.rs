//! AlterClientQuotas and DescribeClientQuotas against a real broker (simulated disk) with a
//! security store in a temporary directory, with `kafka-protocol`'s request types as
//! `kafka-configs --entity-type users` sends them.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

use super::*;
use crate::broker::BrokerConfig;
use crate::clock::SimClock;
use crate::security::acl::AuthorizerConfig;
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::principal::KafkaPrincipal;
use crate::security::records::SecurityLimits;
use crate::security::store::{SecurityStore, StoreMode};
use crate::sim::SimDisk;

const INVALID_REQUEST: i16 = 42;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

async fn broker() -> (Broker<SimDisk>, tempfile::TempDir) {
    let broker = Broker::open(
        SimDisk::new(5),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SecurityStore::open(
        dir.path(),
        StoreMode::OneNode,
        false,
        AuthorizerConfig {
            super_users: vec!["User:admin".to_owned()],
            ..AuthorizerConfig::default()
        },
        SecurityLimits::default(),
        [3; 32],
    )
    .unwrap();
    broker.set_security_store(Arc::new(store));
    (broker, dir)
}

fn identity(name: &str) -> ClientIdentity {
    ClientIdentity {
        principal: KafkaPrincipal::user(name),
        host: IpAddr::from([127, 0, 0, 1]),
        method: AuthMethod::Certificate,
    }
}

fn entity(entity_type: &str, name: Option<&str>) -> EntityData {
    let mut data = EntityData::default();
    data.entity_type = text(entity_type);
    data.entity_name = name.map(text);
    data
}

fn op(key: &str, value: f64, remove: bool) -> OpData {
    let mut data = OpData::default();
    data.key = text(key);
    data.value = value;
    data.remove = remove;
    data
}

fn entry(entity: Vec<EntityData>, ops: Vec<OpData>) -> EntryData {
    let mut data = EntryData::default();
    data.entity = entity;
    data.ops = ops;
    data
}

async fn alter(
    broker: &Broker<SimDisk>,
    entries: Vec<EntryData>,
    validate_only: bool,
) -> Vec<(i16, String)> {
    let mut request = AlterClientQuotasRequest::default();
    request.entries = entries;
    request.validate_only = validate_only;
    let response = alter_client_quotas(broker, &broker.access(&identity("admin")), request).await;
    response
        .entries
        .into_iter()
        .map(|entry| {
            (
                entry.error_code,
                entry
                    .error_message
                    .map(|text| text.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn component(entity_type: &str, match_type: i8, name: Option<&str>) -> ComponentData {
    let mut data = ComponentData::default();
    data.entity_type = text(entity_type);
    data.match_type = match_type;
    data._match = name.map(text);
    data
}

/// One described entry: the user name (`None`: the default user) and its (key, value)s.
type Described = (Option<String>, Vec<(String, f64)>);

/// Each described entry, or the error code.
fn describe(
    broker: &Broker<SimDisk>,
    components: Vec<ComponentData>,
    strict: bool,
) -> Result<Vec<Described>, i16> {
    let mut request = DescribeClientQuotasRequest::default();
    request.components = components;
    request.strict = strict;
    let response = describe_client_quotas(broker, &broker.access(&identity("admin")), &request);
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    Ok(response
        .entries
        .unwrap()
        .into_iter()
        .map(|entry| {
            assert_eq!(entry.entity.len(), 1);
            assert_eq!(entry.entity[0].entity_type.as_str(), "user");
            (
                entry.entity[0]
                    .entity_name
                    .as_ref()
                    .map(|name| name.as_str().to_owned()),
                entry
                    .values
                    .into_iter()
                    .map(|value| (value.key.as_str().to_owned(), value.value))
                    .collect(),
            )
        })
        .collect())
}

#[tokio::test]
async fn user_and_default_quotas_are_altered_and_described_with_filters() {
    // Goal: `kafka-configs --alter --add-config producer_byte_rate=1024 --entity-type users
    // --entity-name alice` and `--entity-default` store quotas that DescribeClientQuotas
    // answers per Kafka's filters (exact, default, any, strict, other entity types).
    let (broker, _dir) = broker().await;
    let results = alter(
        &broker,
        vec![
            entry(
                vec![entity("user", Some("alice"))],
                vec![op("producer_byte_rate", 1024.0, false)],
            ),
            entry(
                vec![entity("user", None)],
                vec![op("consumer_byte_rate", 2048.0, false)],
            ),
        ],
        false,
    )
    .await;
    assert_eq!(results, vec![(0, String::new()), (0, String::new())]);
    let alice = (
        Some("alice".to_owned()),
        vec![("producer_byte_rate".to_owned(), 1024.0)],
    );
    let default = (None, vec![("consumer_byte_rate".to_owned(), 2048.0)]);
    // Every user entity (kafka-configs --describe --entity-type users).
    assert_eq!(
        describe(&broker, vec![component("user", 2, None)], false),
        Ok(vec![default.clone(), alice.clone()])
    );
    assert_eq!(
        describe(&broker, vec![component("user", 0, Some("alice"))], false),
        Ok(vec![alice.clone()])
    );
    assert_eq!(
        describe(&broker, vec![component("user", 1, None)], false),
        Ok(vec![default.clone()])
    );
    assert_eq!(
        describe(&broker, vec![component("user", 0, Some("bob"))], false),
        Ok(vec![])
    );
    // No components: everything; strict with none: only entities without types, none.
    assert_eq!(
        describe(&broker, vec![], false),
        Ok(vec![default.clone(), alice.clone()])
    );
    assert_eq!(describe(&broker, vec![], true), Ok(vec![]));
    // A client-id component: no user-only entity has one.
    assert_eq!(
        describe(&broker, vec![component("client-id", 2, None)], false),
        Ok(vec![])
    );
    assert_eq!(
        describe(
            &broker,
            vec![component("user", 2, None), component("user", 1, None)],
            false
        ),
        Err(INVALID_REQUEST)
    );
    // Removing alice's only key removes her entity; the removal of a key not set is fine.
    let results = alter(
        &broker,
        vec![entry(
            vec![entity("user", Some("alice"))],
            vec![
                op("producer_byte_rate", 0.0, true),
                op("consumer_byte_rate", 0.0, true),
            ],
        )],
        false,
    )
    .await;
    assert_eq!(results, vec![(0, String::new())]);
    assert_eq!(
        describe(&broker, vec![component("user", 2, None)], false),
        Ok(vec![default])
    );
}

#[tokio::test]
async fn validate_only_stores_nothing_and_bad_entries_are_refused_alone() {
    // Goal: validate_only answers without storing; a client-id entity, an unknown key, a
    // fractional or zero value are each INVALID_REQUEST with a message, the other entries
    // of the request still apply.
    let (broker, _dir) = broker().await;
    let results = alter(
        &broker,
        vec![entry(
            vec![entity("user", Some("alice"))],
            vec![op("producer_byte_rate", 1024.0, false)],
        )],
        true,
    )
    .await;
    assert_eq!(results, vec![(0, String::new())]);
    assert_eq!(describe(&broker, vec![], false), Ok(vec![]));
    let results = alter(
        &broker,
        vec![
            entry(
                vec![entity("client-id", Some("app"))],
                vec![op("producer_byte_rate", 1024.0, false)],
            ),
            entry(
                vec![
                    entity("user", Some("alice")),
                    entity("client-id", Some("app")),
                ],
                vec![op("producer_byte_rate", 1024.0, false)],
            ),
            entry(
                vec![entity("user", Some("alice"))],
                vec![op("request_percentage", 50.0, false)],
            ),
            entry(
                vec![entity("user", Some("alice"))],
                vec![op("producer_byte_rate", 10.5, false)],
            ),
            entry(
                vec![entity("user", Some("alice"))],
                vec![op("producer_byte_rate", 0.0, false)],
            ),
            entry(
                vec![entity("user", Some("bob"))],
                vec![op("consumer_byte_rate", 4096.0, false)],
            ),
        ],
        false,
    )
    .await;
    let codes: Vec<i16> = results.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        vec![
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            0
        ]
    );
    assert!(
        results[0].1.contains("user quotas only"),
        "{}",
        results[0].1
    );
    assert!(
        results[2].1.contains("request_percentage"),
        "{}",
        results[2].1
    );
    assert!(results[3].1.contains("whole number"), "{}", results[3].1);
    assert_eq!(
        describe(&broker, vec![], false),
        Ok(vec![(
            Some("bob".to_owned()),
            vec![("consumer_byte_rate".to_owned(), 4096.0)]
        )])
    );
}

#[tokio::test]
async fn the_quota_apis_need_cluster_alter_configs_and_describe_configs() {
    // Goal: with authorization on, a principal without ACLs gets CLUSTER_AUTHORIZATION_FAILED
    // from both APIs and nothing changes; a super user is allowed.
    let (broker, _dir) = broker().await;
    broker.enforce_authorization(AuthorizerConfig {
        super_users: vec!["User:admin".to_owned()],
        ..AuthorizerConfig::default()
    });
    let mut request = AlterClientQuotasRequest::default();
    request.entries = vec![entry(
        vec![entity("user", Some("alice"))],
        vec![op("producer_byte_rate", 1024.0, false)],
    )];
    let response = alter_client_quotas(
        &broker,
        &broker.access(&identity("mallory")),
        request.clone(),
    )
    .await;
    assert_eq!(response.entries[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
    let denied = describe_client_quotas(
        &broker,
        &broker.access(&identity("mallory")),
        &DescribeClientQuotasRequest::default(),
    );
    assert_eq!(denied.error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(
        denied.error_message.as_ref().map(|text| text.as_str()),
        Some("User:mallory may not DescribeConfigs Cluster:kafka-cluster")
    );
    assert_eq!(describe(&broker, vec![], false), Ok(vec![]));
    let response = alter_client_quotas(&broker, &broker.access(&identity("admin")), request).await;
    assert_eq!(response.entries[0].error_code, 0);
    assert_eq!(describe(&broker, vec![], false).unwrap().len(), 1);
}

//! Authorization on the native protocol (`authorize.rs`): a table over every request kind
//! (allowed, denied without an ACL, denied by a DENY over an ALLOW, each needed permission
//! missing, prefixed patterns, super users), transforms run with their deployer's
//! permissions, module parameters shown only to callers who may alter the module.
//!
//! Runs on a current-thread runtime with tokio's time paused (as `wasm_tests.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, OnError, Record, encode_batch};

use super::authorize::Refusal;
use super::*;
use crate::clock::SimClock;
use crate::security::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermission, AuthorizerConfig, CLUSTER_NAME,
    PatternType, ResourceType,
};
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::records::SecurityLimits;
use crate::security::store::{SecurityStore, StoreMode};
use crate::sim::SimDisk;
use crate::wasm::PluginKind;
use crate::wasm::runtime::tests::{KEEP, Wat};

const ALICE: &str = "User:alice";
const ROOT: &str = "User:root";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn keep_module() -> Bytes {
    Bytes::from(
        Wat {
            per_record: KEEP,
            ..Wat::default()
        }
        .module(),
    )
}

fn identity(principal: &str) -> ClientIdentity {
    ClientIdentity {
        principal: principal.parse().unwrap(),
        host: IpAddr::from([10, 0, 0, 7]),
        method: AuthMethod::Certificate,
    }
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .map(|value| Record {
            timestamp: 1000,
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// A broker with a security store (super user `User:root`), authorization on, and:
/// topics `orders` (one record) and `orders.t2`, module `m` (parameter `secret`), group `g`
/// (a committed offset), transform `t` (orders → orders.t, deployed by the node).
async fn fixture() -> (Arc<Broker<SimDisk>>, Arc<SecurityStore>, tempfile::TempDir) {
    let mut config = BrokerConfig::default();
    config.transforms.idle_wait = Duration::from_millis(20);
    config.transforms.retry_backoff = Duration::from_millis(20);
    let broker = Broker::open(
        SimDisk::new(15),
        Path::new("/data"),
        config,
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    let broker = Arc::new(broker);
    broker.transforms().start().await;
    let dir = tempfile::tempdir().unwrap();
    let authorizer = AuthorizerConfig {
        super_users: vec![ROOT.to_owned()],
        ..AuthorizerConfig::default()
    };
    let store = Arc::new(
        SecurityStore::open(
            dir.path(),
            StoreMode::OneNode,
            false,
            authorizer.clone(),
            SecurityLimits::default(),
            [1; 32],
        )
        .unwrap(),
    );
    broker.set_security_store(Arc::clone(&store));
    broker.enforce_authorization(authorizer);
    for (topic, partitions) in [("orders", 1), ("orders.t2", 1)] {
        broker
            .registry
            .create_topic(topic, partitions, &BTreeMap::new())
            .await
            .unwrap();
    }
    let produced = tests::produce(&broker, "orders", 0, batch(&["a"]), Acks::Leader).await;
    assert_eq!(produced.error, ErrorCode::None, "{}", produced.message);
    let Response::UploadModule(uploaded) = broker
        .handle(Request::UploadModule(UploadModuleRequest {
            name: "m".into(),
            kind: PluginKind::Filter,
            module: keep_module(),
            params: vec![PluginParam {
                key: "secret".into(),
                value: "s3cret".into(),
            }],
        }))
        .await
    else {
        panic!("wrong response");
    };
    assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
    let Response::OffsetCommit(committed) = broker
        .handle(Request::OffsetCommit(OffsetCommitRequest {
            group_id: "g".into(),
            member_id: String::new(),
            member_epoch: -1,
            topics: vec![OffsetCommitTopic {
                name: "orders".into(),
                partitions: vec![OffsetCommitPartition {
                    partition: 0,
                    offset: 0,
                    metadata: String::new(),
                }],
            }],
        }))
        .await
    else {
        panic!("wrong response");
    };
    assert_eq!(committed.error, ErrorCode::None, "{}", committed.message);
    let Response::DeployTransform(deployed) = broker
        .handle(Request::DeployTransform(deploy_request("t", "orders.t")))
        .await
    else {
        panic!("wrong response");
    };
    assert_eq!(deployed.error, ErrorCode::None, "{}", deployed.message);
    (broker, store, dir)
}

fn deploy_request(name: &str, output: &str) -> DeployTransformRequest {
    DeployTransformRequest {
        name: name.into(),
        kind: PluginKind::Filter,
        module: keep_module(),
        input: "orders".into(),
        output: output.into(),
        params: Vec::new(),
        on_error: OnError::Skip,
        dead_letter_topic: String::new(),
        window: None,
    }
}

/// A permission a request needs: operation, resource type, resource name.
type Grant = (AclOperation, ResourceType, &'static str);

/// One request of `api` and the permissions it needs (empty: none). An exhaustive match:
/// a new request kind does not compile until it is in the table.
fn sample(api: ApiKey) -> (Request, Vec<Grant>) {
    use AclOperation::*;
    use ResourceType::{Cluster, Group, Module, Topic, Transform};
    let cluster = CLUSTER_NAME;
    match api {
        ApiKey::ApiVersions => (Request::ApiVersions(ApiVersionsRequest::default()), vec![]),
        ApiKey::SaslHandshake => (
            Request::SaslHandshake(SaslHandshakeRequest {
                mechanism: "PLAIN".into(),
            }),
            vec![],
        ),
        ApiKey::SaslAuthenticate => (
            Request::SaslAuthenticate(SaslAuthenticateRequest::default()),
            vec![],
        ),
        ApiKey::Metadata => (
            Request::Metadata(MetadataRequest {
                topics: Some(vec!["orders".into()]),
            }),
            vec![(Describe, Topic, "orders")],
        ),
        ApiKey::CreateTopics => (
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: "fresh".into(),
                    partitions: 1,
                    replication_factor: None,
                    configs: Vec::new(),
                }],
                validate_only: true,
            }),
            vec![(Create, Topic, "fresh")],
        ),
        ApiKey::DeleteTopics => (
            Request::DeleteTopics(DeleteTopicsRequest {
                names: vec!["doomed".into()],
            }),
            vec![(Delete, Topic, "doomed")],
        ),
        ApiKey::DescribeConfigs => (
            Request::DescribeConfigs(DescribeConfigsRequest {
                topics: vec!["orders".into()],
            }),
            vec![(DescribeConfigs, Topic, "orders")],
        ),
        ApiKey::AlterConfigs => (
            Request::AlterConfigs(AlterConfigsRequest {
                topics: vec![AlterTopicConfigs {
                    name: "orders".into(),
                    set: vec![ConfigEntry {
                        name: "retention.ms".into(),
                        value: "60000".into(),
                    }],
                    delete: Vec::new(),
                }],
                validate_only: true,
            }),
            vec![(AlterConfigs, Topic, "orders")],
        ),
        ApiKey::CreatePartitions => (
            Request::CreatePartitions(CreatePartitionsRequest {
                topics: vec![CreatePartitionsTopic {
                    name: "orders".into(),
                    count: 2,
                    assignments: Vec::new(),
                }],
                validate_only: true,
            }),
            vec![(Alter, Topic, "orders")],
        ),
        ApiKey::InitProducerId => (
            Request::InitProducerId(InitProducerIdRequest {
                transactional_id: None,
            }),
            vec![(IdempotentWrite, Cluster, cluster)],
        ),
        ApiKey::Produce => (
            Request::Produce(ProduceRequest {
                acks: Acks::Leader,
                timeout_ms: 10_000,
                topics: vec![ProduceTopic {
                    name: "orders".into(),
                    partitions: vec![ProducePartition {
                        partition: 0,
                        current_leader_epoch: None,
                        records: batch(&["p"]),
                    }],
                }],
            }),
            vec![(Write, Topic, "orders")],
        ),
        ApiKey::Fetch => (
            Request::Fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![FetchTopic {
                    name: "orders".into(),
                    partitions: vec![FetchPartition {
                        partition: 0,
                        current_leader_epoch: None,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    }],
                }],
                plugin: Some(PluginRef {
                    module: "m".into(),
                    params: Vec::new(),
                }),
            }),
            vec![(Read, Topic, "orders"), (Read, Module, "m")],
        ),
        ApiKey::ListOffsets => (
            Request::ListOffsets(ListOffsetsRequest {
                topics: vec![ListOffsetsTopic {
                    name: "orders".into(),
                    partitions: vec![ListOffsetsPartition {
                        partition: 0,
                        spec: OffsetSpec::Latest,
                    }],
                }],
            }),
            vec![(Describe, Topic, "orders")],
        ),
        ApiKey::ConsumerGroupHeartbeat => (
            Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
                group_id: "hb".into(),
                member_id: String::new(),
                member_epoch: 0,
                instance_id: None,
                rebalance_timeout_ms: 30_000,
                session_timeout_ms: 45_000,
                subscribed_topics: vec!["orders".into()],
                subscribed_pattern: None,
                assignor: String::new(),
                owned_partitions: Vec::new(),
            }),
            vec![(Read, Group, "hb"), (Describe, Topic, "orders")],
        ),
        ApiKey::OffsetCommit => (
            Request::OffsetCommit(OffsetCommitRequest {
                group_id: "g".into(),
                member_id: String::new(),
                member_epoch: -1,
                topics: vec![OffsetCommitTopic {
                    name: "orders".into(),
                    partitions: vec![OffsetCommitPartition {
                        partition: 0,
                        offset: 1,
                        metadata: String::new(),
                    }],
                }],
            }),
            vec![(Read, Group, "g"), (Read, Topic, "orders")],
        ),
        ApiKey::OffsetFetch => (
            Request::OffsetFetch(OffsetFetchRequest {
                group_id: "g".into(),
                topics: Some(vec![TopicPartitions {
                    topic: "orders".into(),
                    partitions: vec![0],
                }]),
            }),
            vec![(Describe, Group, "g"), (Describe, Topic, "orders")],
        ),
        ApiKey::ListGroups => (
            Request::ListGroups(ListGroupsRequest::default()),
            vec![(Describe, Group, "g")],
        ),
        ApiKey::DescribeGroups => (
            Request::DescribeGroups(DescribeGroupsRequest {
                group_ids: vec!["g".into()],
            }),
            vec![(Describe, Group, "g")],
        ),
        ApiKey::DeleteGroups => (
            Request::DeleteGroups(DeleteGroupsRequest {
                group_ids: vec!["gone".into()],
            }),
            vec![(Delete, Group, "gone")],
        ),
        ApiKey::FindCoordinator => (
            Request::FindCoordinator(FindCoordinatorRequest {
                group_id: "g".into(),
            }),
            vec![(Describe, Group, "g")],
        ),
        ApiKey::UploadModule => (
            Request::UploadModule(UploadModuleRequest {
                name: "m2".into(),
                kind: PluginKind::Filter,
                module: keep_module(),
                params: Vec::new(),
            }),
            vec![(Alter, Module, "m2")],
        ),
        ApiKey::ListModules => (
            Request::ListModules(ListModulesRequest {}),
            vec![(Describe, Module, "m")],
        ),
        ApiKey::DeleteModule => (
            Request::DeleteModule(DeleteModuleRequest {
                name: "nomod".into(),
            }),
            vec![(Alter, Module, "nomod")],
        ),
        ApiKey::DeployTransform => (
            Request::DeployTransform(deploy_request("t2", "orders.t2")),
            vec![
                (Alter, Transform, "t2"),
                (Read, Topic, "orders"),
                (Write, Topic, "orders.t2"),
            ],
        ),
        ApiKey::DescribeTransforms => (
            Request::DescribeTransforms(DescribeTransformsRequest {
                names: vec!["t".into()],
            }),
            vec![(Describe, Transform, "t")],
        ),
        ApiKey::AlterTransform => (
            Request::AlterTransform(AlterTransformRequest {
                name: "nothing".into(),
                action: "pause".into(),
            }),
            vec![(Alter, Transform, "nothing")],
        ),
        ApiKey::DescribeCluster => (
            Request::DescribeCluster(DescribeClusterRequest {}),
            vec![(Describe, Cluster, cluster)],
        ),
        ApiKey::ElectLeaders => (
            Request::ElectLeaders(ElectLeadersRequest { topic: None }),
            vec![(Alter, Cluster, cluster)],
        ),
        ApiKey::AlterPartitionReassignments => (
            Request::AlterPartitionReassignments(AlterPartitionReassignmentsRequest {
                topic: "orders".into(),
                partition: 0,
                replicas: vec![0],
                cancel: false,
            }),
            vec![(Alter, Cluster, cluster)],
        ),
        ApiKey::ListPartitionReassignments => (
            Request::ListPartitionReassignments(ListPartitionReassignmentsRequest { topic: None }),
            vec![(Describe, Cluster, cluster)],
        ),
        ApiKey::DecommissionNode => (
            Request::DecommissionNode(DecommissionNodeRequest { node_id: 7 }),
            vec![(Alter, Cluster, cluster)],
        ),
        ApiKey::AlterUserScramCredentials => (
            Request::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
                deletions: vec![ScramDeletion {
                    name: "ghost".into(),
                    mechanism: "SCRAM-SHA-256".into(),
                }],
                upsertions: Vec::new(),
            }),
            vec![(Alter, Cluster, cluster)],
        ),
        ApiKey::DescribeUserScramCredentials => (
            Request::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest {
                users: Vec::new(),
            }),
            vec![(Describe, Cluster, cluster)],
        ),
        ApiKey::AlterClientQuotas => (
            Request::AlterClientQuotas(AlterClientQuotasRequest {
                entries: vec![ClientQuotaAlteration {
                    user: Some("alice".into()),
                    ops: vec![ClientQuotaOp {
                        key: "producer_byte_rate".into(),
                        value: 1_048_576,
                        remove: false,
                    }],
                }],
                validate_only: false,
            }),
            vec![(AlterConfigs, Cluster, cluster)],
        ),
        ApiKey::DescribeClientQuotas => (
            Request::DescribeClientQuotas(DescribeClientQuotasRequest { users: Vec::new() }),
            vec![(DescribeConfigs, Cluster, cluster)],
        ),
        ApiKey::Snapshot => (
            Request::Snapshot(SnapshotRequest {
                out_dir: "/nonexistent-parent/snapshot".into(),
            }),
            vec![(Alter, Cluster, cluster)],
        ),
        ApiKey::SnapshotProgress => (
            Request::SnapshotProgress(SnapshotProgressRequest {
                out_dir: "/nonexistent-parent/snapshot".into(),
            }),
            vec![(Describe, Cluster, cluster)],
        ),
        ApiKey::TableGet => (
            Request::TableGet(TableGetRequest {
                name: "t".into(),
                key: Bytes::from_static(b"k"),
            }),
            vec![(Describe, Transform, "t"), (Read, Topic, "orders.t")],
        ),
        ApiKey::TableScan => (
            Request::TableScan(TableScanRequest {
                name: "t".into(),
                prefix: Bytes::new(),
                limit: 0,
            }),
            vec![(Describe, Transform, "t"), (Read, Topic, "orders.t")],
        ),
        ApiKey::CreateAcls => (
            Request::CreateAcls(CreateAclsRequest {
                bindings: vec![carol_binding()],
            }),
            vec![(Alter, Cluster, cluster)],
        ),
        ApiKey::DescribeAcls => (
            Request::DescribeAcls(DescribeAclsRequest {
                filter: carol_filter(),
            }),
            vec![(Describe, Cluster, cluster)],
        ),
        ApiKey::DeleteAcls => (
            Request::DeleteAcls(DeleteAclsRequest {
                filters: vec![carol_filter()],
            }),
            vec![(Alter, Cluster, cluster)],
        ),
    }
}

/// An ACL for someone else (`User:carol`), for the ACL requests to work on.
fn carol_binding() -> AclBindingWire {
    AclBindingWire {
        resource_type: ResourceType::Topic.code(),
        resource_name: "carols".into(),
        pattern_type: PatternType::Literal.code(),
        principal: "User:carol".into(),
        host: "*".into(),
        operation: AclOperation::Read.code(),
        permission: AclPermission::Allow.code(),
    }
}

fn carol_filter() -> AclFilterWire {
    AclFilterWire {
        resource_type: 1,
        resource_name: None,
        pattern_type: 1,
        principal: Some("User:carol".into()),
        host: None,
        operation: 1,
        permission: 1,
    }
}

/// Whether the answer refuses anything for lack of a permission: an authorization code
/// anywhere in it, or (for listings, which leave out what the caller may not see) the
/// fixture's item missing.
fn denied(answer: &Result<Response, Refusal>) -> bool {
    let response = match answer {
        Err(refusal) => return refusal.code.is_authorization_failure(),
        Ok(response) => response,
    };
    let codes: Vec<ErrorCode> = match response {
        Response::ApiVersions(_) => vec![],
        Response::SaslHandshake(answer) => vec![answer.error],
        Response::SaslAuthenticate(answer) => vec![answer.error],
        Response::Metadata(answer) => answer.topics.iter().map(|topic| topic.error).collect(),
        Response::CreateTopics(answer) => answer.topics.iter().map(|topic| topic.error).collect(),
        Response::DeleteTopics(answer) => answer.topics.iter().map(|topic| topic.error).collect(),
        Response::DescribeConfigs(answer) => {
            answer.topics.iter().map(|topic| topic.error).collect()
        }
        Response::AlterConfigs(answer) => answer.topics.iter().map(|topic| topic.error).collect(),
        Response::CreatePartitions(answer) => {
            answer.topics.iter().map(|topic| topic.error).collect()
        }
        Response::InitProducerId(answer) => vec![answer.error],
        Response::Produce(answer) => answer
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|partition| partition.error))
            .collect(),
        Response::Fetch(answer) => std::iter::once(answer.error)
            .chain(
                answer
                    .topics
                    .iter()
                    .flat_map(|topic| topic.partitions.iter().map(|partition| partition.error)),
            )
            .collect(),
        Response::ListOffsets(answer) => answer
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|partition| partition.error))
            .collect(),
        Response::ConsumerGroupHeartbeat(answer) => vec![answer.error],
        Response::OffsetCommit(answer) => std::iter::once(answer.error)
            .chain(
                answer
                    .topics
                    .iter()
                    .flat_map(|topic| topic.partitions.iter().map(|partition| partition.error)),
            )
            .collect(),
        Response::OffsetFetch(answer) => vec![answer.error],
        Response::AlterClientQuotas(answer) => {
            answer.results.iter().map(|result| result.error).collect()
        }
        Response::DescribeClientQuotas(answer) => vec![answer.error],
        Response::Snapshot(answer) => vec![answer.error],
        Response::SnapshotProgress(answer) => vec![answer.error],
        Response::TableGet(answer) => vec![answer.error],
        Response::TableScan(answer) => vec![answer.error],
        Response::ListGroups(answer) => {
            return !answer.groups.iter().any(|group| group.group_id == "g");
        }
        Response::DescribeGroups(answer) => answer.groups.iter().map(|group| group.error).collect(),
        Response::DeleteGroups(answer) => answer.groups.iter().map(|group| group.error).collect(),
        Response::FindCoordinator(answer) => vec![answer.error],
        Response::UploadModule(answer) => vec![answer.error],
        Response::ListModules(answer) => {
            return !answer.modules.iter().any(|module| module.name == "m");
        }
        Response::DeleteModule(answer) => vec![answer.error],
        Response::DeployTransform(answer) => vec![answer.error],
        Response::DescribeTransforms(answer) => answer
            .transforms
            .iter()
            .map(|transform| transform.error)
            .collect(),
        Response::AlterTransform(answer) => vec![answer.error],
        Response::DescribeCluster(answer) => vec![answer.error],
        Response::ElectLeaders(answer) => vec![answer.error],
        Response::AlterPartitionReassignments(answer) => vec![answer.error],
        Response::ListPartitionReassignments(answer) => vec![answer.error],
        Response::DecommissionNode(answer) => vec![answer.error],
        Response::AlterUserScramCredentials(answer) => {
            answer.results.iter().map(|result| result.error).collect()
        }
        Response::DescribeUserScramCredentials(answer) => {
            answer.users.iter().map(|user| user.error).collect()
        }
        Response::CreateAcls(answer) => answer.results.iter().map(|result| result.error).collect(),
        Response::DescribeAcls(answer) => vec![answer.error],
        Response::DeleteAcls(answer) => answer.results.iter().map(|result| result.error).collect(),
    };
    codes.iter().any(|code| code.is_authorization_failure())
}

fn binding(
    (operation, resource_type, name): Grant,
    pattern_type: PatternType,
    permission: AclPermission,
) -> AclBinding {
    AclBinding::new(
        resource_type,
        name,
        pattern_type,
        ALICE,
        "*",
        operation,
        permission,
    )
    .unwrap()
}

async fn set_acls(store: &SecurityStore, bindings: Vec<AclBinding>) {
    let any = AclBindingFilter::from_wire(1, None, 1, None, None, 1, 1).unwrap();
    store.delete_acls(&[any]).await.unwrap();
    if !bindings.is_empty() {
        store.create_acls(bindings).await.unwrap();
    }
}

async fn ask(
    broker: &Broker<SimDisk>,
    principal: &str,
    request: Request,
) -> Result<Response, Refusal> {
    let identity = identity(principal);
    let fuel = broker.plugins().fetch_fuel_account(&identity);
    broker.handle_as(&identity, "test", request, &fuel).await
}

// Goal: every native request kind (derived from `ApiKey::ALL`, so a new kind fails here
// until it has a rule) is answered when the caller holds what it needs and refused with an
// authorization code when it lacks any one of those permissions, when a DENY covers an
// ALLOW, and with no ACL at all; prefixed ALLOWs work; super users need no ACL.
#[test]
fn every_request_kind_is_authorized_as_its_table_says() {
    runtime().block_on(async {
        let (broker, store, _dir) = fixture().await;
        for &api in ApiKey::ALL {
            let (request, grants) = sample(api);
            assert_eq!(request.api_key(), api);
            let allow = |grants: &[Grant], pattern: PatternType| -> Vec<AclBinding> {
                grants
                    .iter()
                    .map(|grant| {
                        // The cluster is always named literally.
                        let pattern = if grant.1 == ResourceType::Cluster {
                            PatternType::Literal
                        } else {
                            pattern
                        };
                        let mut grant = *grant;
                        if pattern == PatternType::Prefixed {
                            grant.2 = &grant.2[..grant.2.len().div_ceil(2)];
                        }
                        binding(grant, pattern, AclPermission::Allow)
                    })
                    .collect()
            };

            set_acls(&store, Vec::new()).await;
            let answer = ask(&broker, ALICE, request.clone()).await;
            assert_eq!(
                denied(&answer),
                !grants.is_empty(),
                "{api:?} without ACLs: {answer:?}"
            );

            set_acls(&store, allow(&grants, PatternType::Literal)).await;
            let answer = ask(&broker, ALICE, request.clone()).await;
            assert!(!denied(&answer), "{api:?} with {grants:?}: {answer:?}");

            set_acls(&store, allow(&grants, PatternType::Prefixed)).await;
            let answer = ask(&broker, ALICE, request.clone()).await;
            assert!(
                !denied(&answer),
                "{api:?} with prefixed {grants:?}: {answer:?}"
            );

            set_acls(&store, Vec::new()).await;
            let answer = ask(&broker, ROOT, request.clone()).await;
            assert!(!denied(&answer), "{api:?} as a super user: {answer:?}");

            for (index, grant) in grants.iter().enumerate() {
                let mut bindings = allow(&grants, PatternType::Literal);
                bindings.push(binding(*grant, PatternType::Literal, AclPermission::Deny));
                set_acls(&store, bindings).await;
                let answer = ask(&broker, ALICE, request.clone()).await;
                assert!(denied(&answer), "{api:?} with DENY {grant:?}: {answer:?}");

                let mut missing = grants.clone();
                missing.remove(index);
                set_acls(&store, allow(&missing, PatternType::Literal)).await;
                let answer = ask(&broker, ALICE, request.clone()).await;
                assert!(denied(&answer), "{api:?} without {grant:?}: {answer:?}");
            }
        }
    });
}

// Goal: a denied topic is answered alike whether or not it exists (no existence leak), with
// the Denied text naming principal, operation and resource; "all topics" listings leave out
// what the caller may not describe.
#[test]
fn denials_name_the_permission_and_do_not_reveal_existence() {
    runtime().block_on(async {
        let (broker, store, _dir) = fixture().await;
        set_acls(&store, Vec::new()).await;
        let produce = |topic: &str| {
            Request::Produce(ProduceRequest {
                acks: Acks::Leader,
                timeout_ms: 1000,
                topics: vec![ProduceTopic {
                    name: topic.into(),
                    partitions: vec![ProducePartition {
                        partition: 0,
                        current_leader_epoch: None,
                        records: batch(&["x"]),
                    }],
                }],
            })
        };
        let mut answers = Vec::new();
        for topic in ["orders", "no-such-topic"] {
            let Ok(Response::Produce(answer)) = ask(&broker, ALICE, produce(topic)).await else {
                panic!("wrong response");
            };
            let partition = answer.topics[0].partitions[0].clone();
            assert_eq!(partition.error, ErrorCode::TopicAuthorizationFailed);
            assert_eq!(
                partition.message,
                format!("User:alice may not Write Topic:{topic}")
            );
            answers.push((partition.error, partition.base_offset));
        }
        assert_eq!(answers[0], answers[1]);
        // Metadata and ListOffsets name the permission too (as every other denial does),
        // existing topic or not.
        let names = ["orders", "no-such-topic"];
        let Ok(Response::Metadata(described)) = ask(
            &broker,
            ALICE,
            Request::Metadata(MetadataRequest {
                topics: Some(names.iter().map(|name| name.to_string()).collect()),
            }),
        )
        .await
        else {
            panic!("wrong response");
        };
        let Ok(Response::ListOffsets(listed)) = ask(
            &broker,
            ALICE,
            Request::ListOffsets(ListOffsetsRequest {
                topics: names
                    .iter()
                    .map(|name| ListOffsetsTopic {
                        name: name.to_string(),
                        partitions: vec![ListOffsetsPartition {
                            partition: 0,
                            spec: OffsetSpec::Latest,
                        }],
                    })
                    .collect(),
            }),
        )
        .await
        else {
            panic!("wrong response");
        };
        for name in names {
            let expected = format!("User:alice may not Describe Topic:{name}");
            let topic = described
                .topics
                .iter()
                .find(|topic| topic.name == name)
                .unwrap();
            assert_eq!(topic.error, ErrorCode::TopicAuthorizationFailed);
            assert_eq!(topic.message, expected);
            let topic = listed
                .topics
                .iter()
                .find(|topic| topic.name == name)
                .unwrap();
            assert_eq!(
                topic.partitions[0].error,
                ErrorCode::TopicAuthorizationFailed
            );
            assert_eq!(topic.partitions[0].message, expected);
        }

        set_acls(
            &store,
            vec![binding(
                (AclOperation::Describe, ResourceType::Topic, "orders"),
                PatternType::Literal,
                AclPermission::Allow,
            )],
        )
        .await;
        let Ok(Response::Metadata(listed)) = ask(
            &broker,
            ALICE,
            Request::Metadata(MetadataRequest { topics: None }),
        )
        .await
        else {
            panic!("wrong response");
        };
        let names: Vec<&str> = listed
            .topics
            .iter()
            .map(|topic| topic.name.as_str())
            .collect();
        assert_eq!(names, vec!["orders"]);

        // InitProducerId has no message field: refused as a frame-level error with the text.
        set_acls(&store, Vec::new()).await;
        let refused = ask(
            &broker,
            ALICE,
            Request::InitProducerId(InitProducerIdRequest {
                transactional_id: None,
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code, ErrorCode::ClusterAuthorizationFailed);
        assert_eq!(
            refused.message,
            "User:alice may not IdempotentWrite Cluster:kafka-cluster"
        );
        // Write on some topic is enough (KIP-679).
        set_acls(
            &store,
            vec![binding(
                (AclOperation::Write, ResourceType::Topic, "elsewhere"),
                PatternType::Literal,
                AclPermission::Allow,
            )],
        )
        .await;
        let answer = ask(
            &broker,
            ALICE,
            Request::InitProducerId(InitProducerIdRequest {
                transactional_id: None,
            }),
        )
        .await;
        assert!(!denied(&answer), "{answer:?}");
    });
}

// Goal (issue 15): a pattern subscription assigns only topics the member's principal may
// Describe; once an ACL lets it describe another matching topic, its next heartbeat is
// assigned that one too. Method: topics orders and orders.t2, both matching `orders.*`;
// alice may Describe orders only, then orders.t2 as well.
#[test]
fn a_pattern_subscription_matches_only_topics_the_member_may_describe() {
    runtime().block_on(async {
        let (broker, store, _dir) = fixture().await;
        let grants = |topics: &[&'static str]| {
            let mut grants = vec![binding(
                (AclOperation::Read, ResourceType::Group, "by-pattern"),
                PatternType::Literal,
                AclPermission::Allow,
            )];
            grants.extend(topics.iter().map(|topic| {
                binding(
                    (AclOperation::Describe, ResourceType::Topic, topic),
                    PatternType::Literal,
                    AclPermission::Allow,
                )
            }));
            grants
        };
        let heartbeat = |member_id: String, member_epoch: i32, owned: Vec<TopicPartitions>| {
            Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
                group_id: "by-pattern".into(),
                member_id,
                member_epoch,
                instance_id: None,
                rebalance_timeout_ms: 30_000,
                session_timeout_ms: 45_000,
                subscribed_topics: Vec::new(),
                subscribed_pattern: Some("orders.*".into()),
                assignor: "range".into(),
                owned_partitions: owned,
            })
        };
        let beat = |request| async {
            match ask(&broker, ALICE, request).await {
                Ok(Response::ConsumerGroupHeartbeat(answer)) => {
                    assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
                    answer
                }
                other => panic!("wrong response: {other:?}"),
            }
        };
        let topics = |assignment: &[TopicPartitions]| -> Vec<String> {
            assignment.iter().map(|topic| topic.topic.clone()).collect()
        };
        set_acls(&store, grants(&["orders"])).await;
        let joined = beat(heartbeat(String::new(), 0, Vec::new())).await;
        assert_eq!(topics(&joined.assignment), vec!["orders"]);
        set_acls(&store, grants(&["orders", "orders.t2"])).await;
        let again = beat(heartbeat(
            joined.member_id.clone(),
            joined.member_epoch,
            joined.assignment.clone(),
        ))
        .await;
        assert_eq!(topics(&again.assignment), vec!["orders", "orders.t2"]);
    });
}

// Goal: module parameters (issue 15: "visible to every client") are listed only to callers
// who may alter the module; others see the module without them.
#[test]
fn module_parameters_are_shown_only_to_callers_who_may_alter_the_module() {
    runtime().block_on(async {
        let (broker, store, _dir) = fixture().await;
        let list = || async {
            let Ok(Response::ListModules(listed)) =
                ask(&broker, ALICE, Request::ListModules(ListModulesRequest {})).await
            else {
                panic!("wrong response");
            };
            listed.modules
        };
        set_acls(
            &store,
            vec![binding(
                (AclOperation::Describe, ResourceType::Module, "m"),
                PatternType::Literal,
                AclPermission::Allow,
            )],
        )
        .await;
        let modules = list().await;
        assert_eq!(modules.len(), 1);
        assert_eq!(modules[0].name, "m");
        assert!(modules[0].params.is_empty(), "{:?}", modules[0].params);

        set_acls(
            &store,
            vec![binding(
                (AclOperation::Alter, ResourceType::Module, "m"),
                PatternType::Literal,
                AclPermission::Allow,
            )],
        )
        .await;
        let modules = list().await;
        assert_eq!(
            modules[0].params,
            vec![PluginParam {
                key: "secret".into(),
                value: "s3cret".into(),
            }]
        );
        // The same rule for a transform's parameters.
        let described = ask(
            &broker,
            ROOT,
            Request::DescribeTransforms(DescribeTransformsRequest {
                names: vec!["t".into()],
            }),
        )
        .await;
        assert!(!denied(&described));
    });
}

/// When a wait is over: the transform's description and the records in its output.
type Done = Box<dyn Fn(&TransformDescription, i64) -> bool>;

async fn describe_t2(broker: &Broker<SimDisk>) -> TransformDescription {
    broker
        .describe_transforms(DescribeTransformsRequest {
            names: vec!["t2".into()],
        })
        .await
        .transforms
        .remove(0)
}

async fn records_in(broker: &Broker<SimDisk>, topic: &str) -> i64 {
    broker
        .registry
        .partition_log(topic, 0)
        .unwrap()
        .high_watermark()
}

// Goal (issue 15's test): a transform deployed by a principal without Write on its output
// is refused; one deployed with it runs as its deployer (stored with the definition), and
// stops writing (state `denied`, the reason in DescribeTransforms) when the deployer loses
// Write, until Write is granted again.
#[test]
fn a_transform_runs_with_its_deployers_permissions() {
    runtime().block_on(async {
        let (broker, store, _dir) = fixture().await;
        let alter = binding(
            (AclOperation::Alter, ResourceType::Transform, "t2"),
            PatternType::Literal,
            AclPermission::Allow,
        );
        let read = binding(
            (AclOperation::Read, ResourceType::Topic, "orders"),
            PatternType::Literal,
            AclPermission::Allow,
        );
        let write = binding(
            (AclOperation::Write, ResourceType::Topic, "orders.t2"),
            PatternType::Literal,
            AclPermission::Allow,
        );
        set_acls(&store, vec![alter.clone(), read.clone()]).await;
        let Ok(Response::DeployTransform(refused)) = ask(
            &broker,
            ALICE,
            Request::DeployTransform(deploy_request("t2", "orders.t2")),
        )
        .await
        else {
            panic!("wrong response");
        };
        assert_eq!(refused.error, ErrorCode::TopicAuthorizationFailed);
        assert_eq!(refused.message, "User:alice may not Write Topic:orders.t2");
        assert!(broker.registry.transform("t2").await.is_none());

        set_acls(&store, vec![alter.clone(), read.clone(), write.clone()]).await;
        let Ok(Response::DeployTransform(deployed)) = ask(
            &broker,
            ALICE,
            Request::DeployTransform(deploy_request("t2", "orders.t2")),
        )
        .await
        else {
            panic!("wrong response");
        };
        assert_eq!(deployed.error, ErrorCode::None, "{}", deployed.message);
        let stored = broker.registry.transform("t2").await.unwrap();
        assert_eq!(stored.deployer.as_deref(), Some(ALICE));

        let wait = |done: Done| {
            let broker = Arc::clone(&broker);
            async move {
                // A liveness bound on the paused clock, not a timing claim.
                for _ in 0..6000 {
                    let description = describe_t2(&broker).await;
                    let written = records_in(&broker, "orders.t2").await;
                    if done(&description, written) {
                        return description;
                    }
                    crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
                }
                panic!("never happened: {:?}", describe_t2(&broker).await);
            }
        };
        wait(Box::new(|_, written| written == 1)).await;

        // Write revoked: the transform stops writing and says why.
        set_acls(&store, vec![alter.clone(), read.clone()]).await;
        let denied = wait(Box::new(|description, _| description.state == "denied")).await;
        assert!(
            denied
                .last_error
                .contains("User:alice may not Write Topic:orders.t2"),
            "{}",
            denied.last_error
        );
        let produced = tests::produce(&broker, "orders", 0, batch(&["b", "c"]), Acks::Leader).await;
        assert_eq!(produced.error, ErrorCode::None);
        // Many retry periods on the paused clock: still nothing written.
        crate::clock::sleep(&*broker.clock, Duration::from_secs(2)).await;
        assert_eq!(records_in(&broker, "orders.t2").await, 1);
        assert_eq!(describe_t2(&broker).await.state, "denied");

        // Granted again: it resumes where it stopped.
        set_acls(&store, vec![alter, read, write]).await;
        let resumed = wait(Box::new(|description, written| {
            description.state == "running" && written == 3
        }))
        .await;
        assert!(resumed.last_error.is_empty(), "{}", resumed.last_error);

        // The node's own transform (no deployer) runs whatever the ACLs say.
        set_acls(&store, Vec::new()).await;
        let copy = broker
            .describe_transforms(DescribeTransformsRequest {
                names: vec!["t".into()],
            })
            .await
            .transforms
            .remove(0);
        assert_eq!(copy.state, "running");
        assert!(
            broker
                .registry
                .transform("t")
                .await
                .unwrap()
                .deployer
                .is_none()
        );
    });
}

// Goal (audit log): through the native request path, a created topic is one
// `admin_change` line naming the principal and the topic, a denied deletion is one
// `authorization_denied` line (not also a change line), and a validate-only creation
// writes none.
#[test]
fn administrative_changes_and_denials_reach_the_audit_log_once_each() {
    runtime().block_on(async {
        let (broker, store, _dir) = fixture().await;
        let (log, queue) = crate::security::audit::AuditLog::with_queue(
            &crate::security::audit::AuditSettings::default(),
            Arc::new(SimClock::new(1_000_000)),
        );
        broker.set_audit_log(Arc::new(log));
        set_acls(
            &store,
            vec![binding(
                (AclOperation::Create, ResourceType::Topic, "audited"),
                PatternType::Literal,
                AclPermission::Allow,
            )],
        )
        .await;
        let create = |validate_only| {
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: "audited".into(),
                    partitions: 1,
                    replication_factor: None,
                    configs: Vec::new(),
                }],
                validate_only,
            })
        };
        let Ok(Response::CreateTopics(checked)) = ask(&broker, ALICE, create(true)).await else {
            panic!("wrong response");
        };
        assert_eq!(checked.topics[0].error, ErrorCode::None);
        assert!(queue.drain().is_empty(), "validate-only changes nothing");

        let Ok(Response::CreateTopics(created)) = ask(&broker, ALICE, create(false)).await else {
            panic!("wrong response");
        };
        assert_eq!(created.topics[0].error, ErrorCode::None);
        let lines = queue.drain();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["event"], "admin_change");
        assert_eq!(line["principal"], ALICE);
        assert_eq!(line["resource_type"], "Topic");
        assert_eq!(line["resource_name"], "audited");
        assert_eq!(line["outcome"], "done");

        let delete = Request::DeleteTopics(DeleteTopicsRequest {
            names: vec!["audited".into()],
        });
        let Ok(Response::DeleteTopics(refused)) = ask(&broker, ALICE, delete).await else {
            panic!("wrong response");
        };
        assert_eq!(refused.topics[0].error, ErrorCode::TopicAuthorizationFailed);
        let lines = queue.drain();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["event"], "authorization_denied");
        assert_eq!(line["operation"], "Delete");
        assert_eq!(line["resource_name"], "audited");
    });
}

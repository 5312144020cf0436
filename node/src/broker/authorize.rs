//! Authorization on the native protocol (issue 15): what each request kind needs, checked
//! before the unchecked service that answers it ([`Broker::handle_from`]).
//!
//! [`Broker::handle_as`] turns the connection's identity into an [`Access`] and calls
//! `Broker::handle_authorized`, one exhaustive match over [`Request`]: a new request kind
//! without a rule here does not compile. The rules follow Kafka's (docs/research/
//! kafka-authorization-per-api.md) where a request has a Kafka twin, and docs/SECURITY.md
//! lists them all:
//!
//! - Per-item answers where the response is per item (topics, partitions, groups, users,
//!   ACL bindings): a denied item gets its authorization code and the [`Denied`] text, the
//!   allowed ones go to the service. Authorization comes before existence, so a topic the
//!   caller may not see is answered the same whether or not it exists. Denied items are
//!   answered after the allowed ones (as Kafka's ListOffsets and DescribeGroups do).
//! - "All" listings (Metadata without names, ListGroups, ListModules, DescribeTransforms
//!   without names, OffsetFetch of all topics) leave out what the caller may not describe,
//!   silently ([`Access::allows_silently`]).
//! - A whole request whose answer has no message field (InitProducerId) is refused as a
//!   frame-level error ([`Refusal`]) so that the client still gets the text.
//! - Every administrative request records its change with [`Access::record_change`], once
//!   per resource it changed or tried to change; denials are logged by [`Access::check`].
//!
//! Plug-ins and transforms: a fetch naming a plug-in needs Read on its module
//! (`ResourceType::Module`); uploading or deleting a module needs Alter on the cluster or on
//! the module; listing modules shows those the caller may Describe, with parameters only to
//! callers with Alter on the module (or the cluster). Deploying or altering a transform
//! needs Alter on the cluster or on the transform (`ResourceType::Transform`), and a deploy
//! also needs Read on its input and Write on its output (and dead-letter topic): a
//! transform runs with its deployer's permissions (see `transforms/`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use ledge_protocol::wire::{
    AclResult, AlterConfigsRequest, AlterConfigsResponse, AlterPartitionReassignmentsResponse,
    AlterTransformResponse, AlterUserScramCredentialsResponse, ConsumerGroupHeartbeatResponse,
    CreatePartitionsResponse, CreateTopicsResponse, DeleteAclsResult, DeleteGroupsResponse,
    DeleteModuleResponse, DeleteTopicsResponse, DeployTransformRequest, DeployTransformResponse,
    DescribeAclsResponse, DescribeClusterResponse, DescribeConfigsResponse, DescribeGroupsResponse,
    DescribeTransformsRequest, DescribeTransformsResponse, DescribeUserScramCredentialsResponse,
    DescribedGroup, ElectLeadersResponse, ErrorCode, FetchPartitionResponse, FetchResponse,
    FetchTopicResponse, FindCoordinatorResponse, GroupResult, InitProducerIdRequest,
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
    ListPartitionReassignmentsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitPartitionResponse, OffsetCommitResponse, OffsetCommitTopicResponse,
    OffsetFetchResponse, ProducePartitionResponse, ProduceResponse, ProduceTopicResponse, Request,
    Response, TopicConfigs, TopicMetadata, TopicResult, TransformDescription, UploadModuleResponse,
    UserResult, UserScramDescription,
};

use super::Broker;
use super::metadata::OnError;
use super::sequencing::SequencingHold;
use crate::security::access::{Access, Denied};
use crate::security::acl::{AclOperation, AuthorizerConfig, CLUSTER_NAME, ResourceType};
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::principal::KafkaPrincipal;
use crate::security::store::SecurityStore;
use crate::storage::Disk;
use crate::wasm::fuel_budget::FuelAccount;

/// The node's authorization state: the security store (users, ACLs) once installed, and
/// whether requests are checked against its ACLs. Shared by the broker (each request's
/// [`Access`]) and the transform runner (each transform's deployer's).
#[derive(Debug, Default)]
pub struct AccessPolicy {
    /// SASL users, ACLs and the decoy secret (`security/store.rs`), installed by the node
    /// once opened; unset in tests and the simulator that do not use it (the user and ACL
    /// requests are then refused).
    pub(crate) security: OnceLock<Arc<SecurityStore>>,
    /// Whether requests are checked against the ACLs (`[security] authorization`, resolved
    /// at start); set once by the node, off until then.
    pub(crate) authorization: OnceLock<AuthorizerConfig>,
}

impl AccessPolicy {
    /// What `identity` may do, as of now (see [`Broker::access`]).
    pub fn access(&self, identity: &ClientIdentity) -> Access {
        match (self.authorization.get(), self.security.get()) {
            (None, _) => Access::unrestricted(identity.clone()),
            (Some(_), Some(store)) => Access::enforced(identity.clone(), store.authorizer()),
            (Some(config), None) => Access::without_acls(identity.clone(), config.clone()),
        }
    }

    /// What a transform deployed by `deployer` may do, as of now: `None` while
    /// authorization is off, or for a transform without a deployer (the config file's,
    /// older ones): it runs as the node, unrestricted. The deployer is matched as from the
    /// unspecified address `0.0.0.0`: ACLs with host `*` apply, host-restricted ones do not
    /// (the transform runs in the node, not on the deployer's host). A stored principal
    /// that no longer parses denies everything.
    pub fn deployer_access(&self, deployer: Option<&str>) -> Option<Access> {
        let deployer = deployer?;
        self.authorization.get()?;
        let identity = |principal| ClientIdentity {
            principal,
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            method: AuthMethod::Anonymous,
        };
        Some(match deployer.parse::<KafkaPrincipal>() {
            Ok(principal) => self.access(&identity(principal)),
            Err(_) => Access::without_acls(
                identity(KafkaPrincipal::ANONYMOUS),
                AuthorizerConfig::default(),
            ),
        })
    }

    /// Whether a transform deployed by `definition.deployer` may run now: Read on its
    /// input, Write on its output (and on its dead-letter topic under the dead-letter
    /// policy). `Err` is the refusal's text, not logged (the runner logs the change).
    pub(crate) fn transform_permits(
        &self,
        definition: &super::metadata::StoredTransform,
    ) -> Result<(), String> {
        let Some(access) = self.deployer_access(definition.deployer.as_deref()) else {
            return Ok(());
        };
        let mut needed = vec![
            (AclOperation::Read, definition.input.as_str()),
            (AclOperation::Write, definition.output.as_str()),
        ];
        if definition.on_error == OnError::DeadLetter {
            needed.push((AclOperation::Write, definition.dead_letter_topic.as_str()));
        }
        for (operation, topic) in needed {
            if !access.allows_silently(operation, ResourceType::Topic, topic) {
                return Err(access
                    .denied(operation, ResourceType::Topic, topic)
                    .to_string());
            }
        }
        Ok(())
    }
}

/// A whole request refused before its service saw it, answered as a frame-level error (the
/// response header's code and message, an empty body): for requests whose answer has no
/// message field to carry the [`Denied`] text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// The authorization code.
    pub code: ErrorCode,
    /// The [`Denied`] text (`User:alice may not IdempotentWrite Cluster:kafka-cluster`).
    pub message: String,
}

/// The wire code for a denial of `resource_type`.
pub(crate) fn denial_code(resource_type: ResourceType) -> ErrorCode {
    match resource_type {
        ResourceType::Topic => ErrorCode::TopicAuthorizationFailed,
        ResourceType::Group => ErrorCode::GroupAuthorizationFailed,
        ResourceType::Cluster => ErrorCode::ClusterAuthorizationFailed,
        ResourceType::TransactionalId => ErrorCode::TransactionalIdAuthorizationFailed,
        ResourceType::Module | ResourceType::Transform => ErrorCode::ResourceAuthorizationFailed,
    }
}

/// The topics a group member's subscription pattern may match: those `access`'s caller may
/// Describe (not logged, as the "all topics" listings), judged with the ACLs as of this
/// request each time the pattern is resolved; every topic while authorization is off.
pub(crate) fn describable_topics(access: &Access) -> crate::groups::coordinator::TopicFilter {
    if !access.is_enforced() {
        return crate::groups::coordinator::TopicFilter::default();
    }
    let access = access.clone();
    crate::groups::coordinator::TopicFilter::new(move |topic| {
        access.allows_silently(AclOperation::Describe, ResourceType::Topic, topic)
    })
}

/// The code and message a denial is answered with.
fn answer(denied: &Denied, resource_type: ResourceType) -> (ErrorCode, String) {
    (denial_code(resource_type), denied.to_string())
}

/// Splits `items` into the allowed and the denied (with their denial), by `check`.
fn split<T>(
    items: Vec<T>,
    mut check: impl FnMut(&T) -> Result<(), Denied>,
) -> (Vec<T>, Vec<(T, Denied)>) {
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for item in items {
        match check(&item) {
            Ok(()) => allowed.push(item),
            Err(denial) => denied.push((item, denial)),
        }
    }
    (allowed, denied)
}

/// `outcome` as [`Access::record_change`] takes it: a code other than `None` failed.
fn outcome_of(error: ErrorCode, message: &str) -> Result<(), String> {
    if error == ErrorCode::None {
        Ok(())
    } else if message.is_empty() {
        Err(error.name().to_owned())
    } else {
        Err(format!("{error}: {message}"))
    }
}

fn record(
    access: &Access,
    action: &str,
    resource_type: ResourceType,
    name: &str,
    outcome: Result<(), String>,
) {
    access.record_change(
        action,
        resource_type,
        name,
        outcome.as_ref().map(|_| ()).map_err(String::as_str),
    );
}

/// May the caller perform `operation` on the cluster (not logged when not: the caller may
/// still hold it on the named resource, which [`Access::check`] then logs).
fn on_cluster(access: &Access, operation: AclOperation) -> bool {
    access.allows_silently(operation, ResourceType::Cluster, CLUSTER_NAME)
}

/// `operation` on the cluster, or else on `(resource_type, name)`.
fn cluster_or(
    access: &Access,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> Result<(), Denied> {
    if on_cluster(access, operation) {
        return Ok(());
    }
    access.check(operation, resource_type, name)
}

/// May the caller see a module's or transform's parameters (Alter on it or the cluster)?
fn sees_params(access: &Access, resource_type: ResourceType, name: &str) -> bool {
    on_cluster(access, AclOperation::Alter)
        || access.allows_silently(AclOperation::Alter, resource_type, name)
}

/// May the caller see a module or transform in a listing (Describe on it or the cluster)?
fn sees(access: &Access, resource_type: ResourceType, name: &str) -> bool {
    on_cluster(access, AclOperation::Describe)
        || access.allows_silently(AclOperation::Describe, resource_type, name)
}

impl<D: Disk> Broker<D> {
    /// Answers one request from `access`'s caller: each request kind checks what Kafka's
    /// twin checks (see the module documentation) before its service answers. `fuel` pays
    /// for a fetch's plug-in calls.
    pub(super) async fn handle_authorized(
        &self,
        access: &Access,
        client_id: &str,
        request: Request,
        fuel: &FuelAccount,
    ) -> Result<Response, Refusal> {
        let response = match request {
            // Answered before authentication too: nothing to authorize.
            request @ (Request::ApiVersions(_)
            | Request::SaslHandshake(_)
            | Request::SaslAuthenticate(_)) => self.handle_from(client_id, request).await,
            Request::Metadata(request) => {
                Response::Metadata(self.metadata_authorized(access, request))
            }
            Request::CreateTopics(mut request) => {
                let create_anywhere = on_cluster(access, AclOperation::Create);
                let (allowed, denied) = split(std::mem::take(&mut request.topics), |topic| {
                    if create_anywhere {
                        Ok(())
                    } else {
                        access.check(AclOperation::Create, ResourceType::Topic, &topic.name)
                    }
                });
                request.topics = allowed;
                let validate_only = request.validate_only;
                let mut response = if request.topics.is_empty() {
                    CreateTopicsResponse::default()
                } else {
                    self.create_topics(request).await
                };
                if !validate_only {
                    for result in &response.topics {
                        record(
                            access,
                            "CreateTopics",
                            ResourceType::Topic,
                            &result.name,
                            outcome_of(result.error, &result.message),
                        );
                    }
                }
                response.topics.extend(
                    denied
                        .into_iter()
                        .map(|(topic, denial)| denied_topic_result(topic.name, &denial)),
                );
                Response::CreateTopics(response)
            }
            Request::DeleteTopics(mut request) => {
                let (allowed, denied) = split(std::mem::take(&mut request.names), |name| {
                    access.check(AclOperation::Delete, ResourceType::Topic, name)
                });
                request.names = allowed;
                let mut response = if request.names.is_empty() {
                    DeleteTopicsResponse::default()
                } else {
                    self.delete_topics(request).await
                };
                for result in &response.topics {
                    record(
                        access,
                        "DeleteTopics",
                        ResourceType::Topic,
                        &result.name,
                        outcome_of(result.error, &result.message),
                    );
                }
                response.topics.extend(
                    denied
                        .into_iter()
                        .map(|(name, denial)| denied_topic_result(name, &denial)),
                );
                Response::DeleteTopics(response)
            }
            Request::DescribeConfigs(mut request) => {
                let (allowed, denied) = split(std::mem::take(&mut request.topics), |name| {
                    access.check(AclOperation::DescribeConfigs, ResourceType::Topic, name)
                });
                request.topics = allowed;
                let mut response = if request.topics.is_empty() {
                    DescribeConfigsResponse::default()
                } else {
                    self.describe_configs(request)
                };
                response
                    .topics
                    .extend(denied.into_iter().map(|(name, denial)| {
                        let (error, message) = answer(&denial, ResourceType::Topic);
                        TopicConfigs {
                            name,
                            error,
                            message,
                            configs: Vec::new(),
                        }
                    }));
                Response::DescribeConfigs(response)
            }
            Request::AlterConfigs(request) => {
                Response::AlterConfigs(self.alter_configs_authorized(access, request).await)
            }
            Request::CreatePartitions(mut request) => {
                let (allowed, denied) = split(std::mem::take(&mut request.topics), |topic| {
                    access.check(AclOperation::Alter, ResourceType::Topic, &topic.name)
                });
                request.topics = allowed;
                let validate_only = request.validate_only;
                let mut response = if request.topics.is_empty() {
                    CreatePartitionsResponse::default()
                } else {
                    self.create_partitions(request).await
                };
                if !validate_only {
                    for result in &response.topics {
                        record(
                            access,
                            "CreatePartitions",
                            ResourceType::Topic,
                            &result.name,
                            outcome_of(result.error, &result.message),
                        );
                    }
                }
                response.topics.extend(
                    denied
                        .into_iter()
                        .map(|(topic, denial)| denied_topic_result(topic.name, &denial)),
                );
                Response::CreatePartitions(response)
            }
            Request::InitProducerId(request) => {
                self.init_producer_id_authorized(access, request).await?
            }
            Request::Produce(mut request) => {
                let (allowed, denied) = split(std::mem::take(&mut request.topics), |topic| {
                    access.check(AclOperation::Write, ResourceType::Topic, &topic.name)
                });
                request.topics = allowed;
                let mut response = if request.topics.is_empty() {
                    ProduceResponse::default()
                } else {
                    self.data
                        .produce(request, SequencingHold::unobserved())
                        .await
                };
                response
                    .topics
                    .extend(denied.into_iter().map(|(topic, denial)| {
                        let (error, message) = answer(&denial, ResourceType::Topic);
                        ProduceTopicResponse {
                            name: topic.name,
                            partitions: topic
                                .partitions
                                .iter()
                                .map(|partition| ProducePartitionResponse {
                                    partition: partition.partition,
                                    error,
                                    message: message.clone(),
                                    base_offset: -1,
                                    log_append_time_ms: -1,
                                    log_start_offset: -1,
                                    routed: None,
                                })
                                .collect(),
                        }
                    }));
                Response::Produce(response)
            }
            Request::Fetch(mut request) => {
                if let Some(plugin) = &request.plugin
                    && let Err(denial) =
                        access.check(AclOperation::Read, ResourceType::Module, &plugin.module)
                {
                    let (error, message) = answer(&denial, ResourceType::Module);
                    return Ok(Response::Fetch(FetchResponse {
                        throttle_time_ms: 0,
                        error,
                        message,
                        topics: Vec::new(),
                    }));
                }
                let (allowed, denied) = split(std::mem::take(&mut request.topics), |topic| {
                    access.check(AclOperation::Read, ResourceType::Topic, &topic.name)
                });
                request.topics = allowed;
                // Nothing allowed: answered at once (a fetch of nothing would wait).
                let mut response = if request.topics.is_empty() {
                    FetchResponse::default()
                } else {
                    self.fetch_metered(request, fuel).await
                };
                response
                    .topics
                    .extend(denied.into_iter().map(|(topic, denial)| {
                        let (error, message) = answer(&denial, ResourceType::Topic);
                        FetchTopicResponse {
                            name: topic.name,
                            partitions: topic
                                .partitions
                                .iter()
                                .map(|partition| FetchPartitionResponse {
                                    partition: partition.partition,
                                    error,
                                    message: message.clone(),
                                    high_watermark: -1,
                                    log_start_offset: -1,
                                    records: bytes::Bytes::new(),
                                })
                                .collect(),
                        }
                    }));
                Response::Fetch(response)
            }
            Request::ListOffsets(mut request) => {
                let (allowed, denied) = split(std::mem::take(&mut request.topics), |topic| {
                    access.check(AclOperation::Describe, ResourceType::Topic, &topic.name)
                });
                request.topics = allowed;
                let mut response = if request.topics.is_empty() {
                    ListOffsetsResponse::default()
                } else {
                    self.data.list_offsets(request).await
                };
                response
                    .topics
                    .extend(denied.into_iter().map(|(topic, denial)| {
                        let (error, message) = answer(&denial, ResourceType::Topic);
                        ListOffsetsTopicResponse {
                            name: topic.name,
                            partitions: topic
                                .partitions
                                .iter()
                                .map(|partition| ListOffsetsPartitionResponse {
                                    partition: partition.partition,
                                    error,
                                    offset: None,
                                    timestamp: None,
                                    message: message.clone(),
                                })
                                .collect(),
                        }
                    }));
                Response::ListOffsets(response)
            }
            Request::ConsumerGroupHeartbeat(request) => {
                let checked = access
                    .check(AclOperation::Read, ResourceType::Group, &request.group_id)
                    .map_err(|denial| answer(&denial, ResourceType::Group))
                    .and_then(|()| {
                        // Kafka 4.0 (KAFKA-18813): Describe on every subscribed topic.
                        request.subscribed_topics.iter().try_for_each(|topic| {
                            access
                                .check(AclOperation::Describe, ResourceType::Topic, topic)
                                .map_err(|denial| answer(&denial, ResourceType::Topic))
                        })
                    });
                match checked {
                    Ok(()) => Response::ConsumerGroupHeartbeat(
                        self.group_heartbeat(request, client_id, describable_topics(access))
                            .await,
                    ),
                    Err((error, message)) => {
                        Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
                            error,
                            message,
                            member_id: request.member_id,
                            member_epoch: request.member_epoch,
                            ..ConsumerGroupHeartbeatResponse::default()
                        })
                    }
                }
            }
            Request::OffsetCommit(request) => {
                Response::OffsetCommit(self.offset_commit_authorized(access, request).await)
            }
            Request::OffsetFetch(mut request) => {
                if let Err(denial) = access.check(
                    AclOperation::Describe,
                    ResourceType::Group,
                    &request.group_id,
                ) {
                    let (error, message) = answer(&denial, ResourceType::Group);
                    return Ok(Response::OffsetFetch(OffsetFetchResponse {
                        error,
                        message,
                        topics: Vec::new(),
                    }));
                }
                match &request.topics {
                    // The answer has no per-partition code: a named topic the caller may not
                    // describe refuses the whole request.
                    Some(topics) => {
                        for topic in topics {
                            if let Err(denial) = access.check(
                                AclOperation::Describe,
                                ResourceType::Topic,
                                &topic.topic,
                            ) {
                                let (error, message) = answer(&denial, ResourceType::Topic);
                                return Ok(Response::OffsetFetch(OffsetFetchResponse {
                                    error,
                                    message,
                                    topics: Vec::new(),
                                }));
                            }
                        }
                        Response::OffsetFetch(self.group_offset_fetch(request).await)
                    }
                    None => {
                        request.topics = None;
                        let mut response = self.group_offset_fetch(request).await;
                        response.topics.retain(|topic| {
                            access.allows_silently(
                                AclOperation::Describe,
                                ResourceType::Topic,
                                &topic.name,
                            )
                        });
                        Response::OffsetFetch(response)
                    }
                }
            }
            Request::ListGroups(request) => {
                let mut response = self.groups.list_groups(request);
                if !on_cluster(access, AclOperation::Describe) {
                    response.groups.retain(|group| {
                        access.allows_silently(
                            AclOperation::Describe,
                            ResourceType::Group,
                            &group.group_id,
                        )
                    });
                }
                Response::ListGroups(response)
            }
            Request::DescribeGroups(mut request) => {
                let (allowed, denied) = split(std::mem::take(&mut request.group_ids), |group| {
                    access.check(AclOperation::Describe, ResourceType::Group, group)
                });
                request.group_ids = allowed;
                let mut response = if request.group_ids.is_empty() {
                    DescribeGroupsResponse::default()
                } else {
                    self.group_describe(request).await
                };
                response
                    .groups
                    .extend(denied.into_iter().map(|(group_id, denial)| {
                        let (error, message) = answer(&denial, ResourceType::Group);
                        DescribedGroup {
                            group_id,
                            error,
                            message,
                            ..DescribedGroup::default()
                        }
                    }));
                Response::DescribeGroups(response)
            }
            Request::DeleteGroups(mut request) => {
                let (allowed, denied) = split(std::mem::take(&mut request.group_ids), |group| {
                    access.check(AclOperation::Delete, ResourceType::Group, group)
                });
                request.group_ids = allowed;
                let mut response = if request.group_ids.is_empty() {
                    DeleteGroupsResponse::default()
                } else {
                    self.group_delete(request).await
                };
                for result in &response.groups {
                    record(
                        access,
                        "DeleteGroups",
                        ResourceType::Group,
                        &result.group_id,
                        outcome_of(result.error, &result.message),
                    );
                }
                response
                    .groups
                    .extend(denied.into_iter().map(|(group_id, denial)| {
                        let (error, message) = answer(&denial, ResourceType::Group);
                        GroupResult {
                            group_id,
                            error,
                            message,
                        }
                    }));
                Response::DeleteGroups(response)
            }
            Request::FindCoordinator(request) => {
                match access.check(
                    AclOperation::Describe,
                    ResourceType::Group,
                    &request.group_id,
                ) {
                    Ok(()) => Response::FindCoordinator(self.find_coordinator(request).await),
                    Err(denial) => {
                        let (error, message) = answer(&denial, ResourceType::Group);
                        Response::FindCoordinator(FindCoordinatorResponse {
                            error,
                            message,
                            ..FindCoordinatorResponse::default()
                        })
                    }
                }
            }
            Request::UploadModule(request) => {
                let name = request.name.clone();
                let response =
                    match cluster_or(access, AclOperation::Alter, ResourceType::Module, &name) {
                        Ok(()) => self.upload_module(request).await,
                        Err(denial) => {
                            let (error, message) = answer(&denial, ResourceType::Module);
                            return Ok(Response::UploadModule(UploadModuleResponse {
                                error,
                                message,
                                hash: String::new(),
                            }));
                        }
                    };
                record(
                    access,
                    "UploadModule",
                    ResourceType::Module,
                    &name,
                    outcome_of(response.error, &response.message),
                );
                Response::UploadModule(response)
            }
            Request::ListModules(_) => {
                let mut response = self.list_modules().await;
                response
                    .modules
                    .retain(|module| sees(access, ResourceType::Module, &module.name));
                for module in &mut response.modules {
                    if !sees_params(access, ResourceType::Module, &module.name) {
                        module.params.clear();
                    }
                }
                Response::ListModules(response)
            }
            Request::DeleteModule(request) => {
                let name = request.name.clone();
                let response =
                    match cluster_or(access, AclOperation::Alter, ResourceType::Module, &name) {
                        Ok(()) => self.delete_module(request).await,
                        Err(denial) => {
                            let (error, message) = answer(&denial, ResourceType::Module);
                            return Ok(Response::DeleteModule(DeleteModuleResponse {
                                error,
                                message,
                            }));
                        }
                    };
                record(
                    access,
                    "DeleteModule",
                    ResourceType::Module,
                    &name,
                    outcome_of(response.error, &response.message),
                );
                Response::DeleteModule(response)
            }
            Request::DeployTransform(request) => {
                Response::DeployTransform(self.deploy_transform_authorized(access, request).await)
            }
            Request::DescribeTransforms(request) => Response::DescribeTransforms(
                self.describe_transforms_authorized(access, request).await,
            ),
            Request::AlterTransform(request) => {
                let name = request.name.clone();
                let action = request.action.clone();
                let response =
                    match cluster_or(access, AclOperation::Alter, ResourceType::Transform, &name) {
                        Ok(()) => self.alter_transform(request).await,
                        Err(denial) => {
                            let (error, message) = answer(&denial, ResourceType::Transform);
                            return Ok(Response::AlterTransform(AlterTransformResponse {
                                error,
                                message,
                            }));
                        }
                    };
                record(
                    access,
                    &format!("AlterTransform {action}"),
                    ResourceType::Transform,
                    &name,
                    outcome_of(response.error, &response.message),
                );
                Response::AlterTransform(response)
            }
            Request::DescribeCluster(_) => {
                match access.check(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                    Ok(()) => Response::DescribeCluster(self.describe_cluster()),
                    Err(denial) => {
                        let (error, message) = answer(&denial, ResourceType::Cluster);
                        Response::DescribeCluster(DescribeClusterResponse {
                            error,
                            message,
                            ..DescribeClusterResponse::default()
                        })
                    }
                }
            }
            Request::ElectLeaders(request) => {
                if let Err(denial) =
                    access.check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    return Ok(Response::ElectLeaders(ElectLeadersResponse {
                        error,
                        message,
                        ..ElectLeadersResponse::default()
                    }));
                }
                let (resource_type, name) = match &request.topic {
                    Some(topic) => (ResourceType::Topic, topic.clone()),
                    None => (ResourceType::Cluster, CLUSTER_NAME.to_owned()),
                };
                let response = self.elect_leaders(request).await;
                record(
                    access,
                    "ElectLeaders",
                    resource_type,
                    &name,
                    outcome_of(response.error, &response.message),
                );
                Response::ElectLeaders(response)
            }
            Request::AlterPartitionReassignments(request) => {
                if let Err(denial) =
                    access.check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    return Ok(Response::AlterPartitionReassignments(
                        AlterPartitionReassignmentsResponse { error, message },
                    ));
                }
                let action = format!(
                    "AlterPartitionReassignments partition {}{}",
                    request.partition,
                    if request.cancel { " cancel" } else { "" }
                );
                let topic = request.topic.clone();
                let response = self.alter_partition_reassignments(request).await;
                record(
                    access,
                    &action,
                    ResourceType::Topic,
                    &topic,
                    outcome_of(response.error, &response.message),
                );
                Response::AlterPartitionReassignments(response)
            }
            Request::ListPartitionReassignments(request) => {
                match access.check(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                    Ok(()) => Response::ListPartitionReassignments(
                        self.list_partition_reassignments(request),
                    ),
                    Err(denial) => {
                        let (error, message) = answer(&denial, ResourceType::Cluster);
                        Response::ListPartitionReassignments(ListPartitionReassignmentsResponse {
                            error,
                            message,
                            reassignments: Vec::new(),
                        })
                    }
                }
            }
            Request::DecommissionNode(request) => {
                if let Err(denial) =
                    access.check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    return Ok(Response::DecommissionNode(
                        ledge_protocol::wire::DecommissionNodeResponse { error, message },
                    ));
                }
                let action = format!("DecommissionNode {}", request.node_id);
                let response = self.decommission_node(request).await;
                record(
                    access,
                    &action,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                    outcome_of(response.error, &response.message),
                );
                Response::DecommissionNode(response)
            }
            Request::AlterUserScramCredentials(request) => {
                let users: BTreeSet<String> = request
                    .deletions
                    .iter()
                    .map(|deletion| deletion.name.clone())
                    .chain(
                        request
                            .upsertions
                            .iter()
                            .map(|upsertion| upsertion.name.clone()),
                    )
                    .collect();
                if let Err(denial) =
                    access.check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    let results = users
                        .into_iter()
                        .map(|name| UserResult {
                            name,
                            error,
                            message: message.clone(),
                        })
                        .collect();
                    return Ok(Response::AlterUserScramCredentials(
                        AlterUserScramCredentialsResponse { results },
                    ));
                }
                let response = self.alter_user_scram_credentials(request).await;
                for result in &response.results {
                    record(
                        access,
                        &format!("AlterUserScramCredentials user {}", result.name),
                        ResourceType::Cluster,
                        CLUSTER_NAME,
                        outcome_of(result.error, &result.message),
                    );
                }
                Response::AlterUserScramCredentials(response)
            }
            Request::DescribeUserScramCredentials(request) => {
                match access.check(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                    Ok(()) => Response::DescribeUserScramCredentials(
                        self.describe_user_scram_credentials(request),
                    ),
                    Err(denial) => {
                        let (error, message) = answer(&denial, ResourceType::Cluster);
                        // One answer per user asked for; one without a name for "all users".
                        let mut names = request.users;
                        if names.is_empty() {
                            names.push(String::new());
                        }
                        let users = names
                            .into_iter()
                            .map(|name| UserScramDescription {
                                name,
                                error,
                                message: message.clone(),
                                credentials: Vec::new(),
                            })
                            .collect();
                        Response::DescribeUserScramCredentials(
                            DescribeUserScramCredentialsResponse { users },
                        )
                    }
                }
            }
            // Client quotas: AlterConfigs / DescribeConfigs on the cluster, as Kafka's
            // AlterClientQuotas / DescribeClientQuotas.
            Request::AlterClientQuotas(request) => {
                if let Err(denial) = access.check(
                    AclOperation::AlterConfigs,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                ) {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    let results = request
                        .entries
                        .into_iter()
                        .map(|entry| ledge_protocol::wire::ClientQuotaResult {
                            user: entry.user,
                            error,
                            message: message.clone(),
                        })
                        .collect();
                    return Ok(Response::AlterClientQuotas(
                        ledge_protocol::wire::AlterClientQuotasResponse { results },
                    ));
                }
                let validate_only = request.validate_only;
                let response = self.alter_client_quotas_request(request).await;
                if !validate_only {
                    for result in &response.results {
                        let user = result.user.as_deref().unwrap_or("<default>");
                        record(
                            access,
                            &format!("AlterClientQuotas user {user}"),
                            ResourceType::Cluster,
                            CLUSTER_NAME,
                            outcome_of(result.error, &result.message),
                        );
                    }
                }
                Response::AlterClientQuotas(response)
            }
            Request::DescribeClientQuotas(request) => {
                match access.check(
                    AclOperation::DescribeConfigs,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                ) {
                    Ok(()) => Response::DescribeClientQuotas(
                        self.describe_client_quotas_request(&request),
                    ),
                    Err(denial) => {
                        let (error, message) = answer(&denial, ResourceType::Cluster);
                        Response::DescribeClientQuotas(
                            ledge_protocol::wire::DescribeClientQuotasResponse {
                                error,
                                message,
                                entries: Vec::new(),
                            },
                        )
                    }
                }
            }
            // A snapshot copies every topic, the credentials and the ACLs: Alter on the
            // cluster, as the other whole-node operations; audited whatever the outcome.
            Request::Snapshot(request) => {
                if let Err(denial) =
                    access.check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    return Ok(Response::Snapshot(ledge_protocol::wire::SnapshotResponse {
                        error,
                        message,
                        ..Default::default()
                    }));
                }
                let action = format!("Snapshot to {}", request.out_dir);
                let response = self.snapshot_request(request).await;
                record(
                    access,
                    &action,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                    outcome_of(response.error, &response.message),
                );
                Response::Snapshot(response)
            }
            // A table is the state behind a transform's output: Describe on the transform
            // and Read on its output topic.
            Request::TableGet(request) => {
                if let Err((error, message)) = self.table_permits(access, &request.name).await {
                    return Ok(Response::TableGet(ledge_protocol::wire::TableGetResponse {
                        error,
                        message,
                        ..Default::default()
                    }));
                }
                Response::TableGet(self.transforms.table_get(request).await)
            }
            Request::TableScan(request) => {
                if let Err((error, message)) = self.table_permits(access, &request.name).await {
                    return Ok(Response::TableScan(
                        ledge_protocol::wire::TableScanResponse {
                            error,
                            message,
                            ..Default::default()
                        },
                    ));
                }
                Response::TableScan(self.transforms.table_scan(request).await)
            }
            // Progress says only how far a snapshot is: Describe on the cluster.
            Request::SnapshotProgress(request) => {
                if let Err(denial) =
                    access.check(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    return Ok(Response::SnapshotProgress(
                        ledge_protocol::wire::SnapshotProgressResponse {
                            error,
                            message,
                            ..Default::default()
                        },
                    ));
                }
                Response::SnapshotProgress(self.snapshot_progress_request(&request))
            }
            Request::CreateAcls(request) => {
                if let Err(denial) =
                    access.check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    let results = request
                        .bindings
                        .iter()
                        .map(|_| AclResult {
                            error,
                            message: message.clone(),
                        })
                        .collect();
                    return Ok(Response::CreateAcls(
                        ledge_protocol::wire::CreateAclsResponse { results },
                    ));
                }
                let bindings = request.bindings.clone();
                let response = self.create_acls_request(request).await;
                for (binding, result) in bindings.iter().zip(&response.results) {
                    let resource_type = ResourceType::from_code(binding.resource_type)
                        .unwrap_or(ResourceType::Cluster);
                    record(
                        access,
                        "CreateAcls",
                        resource_type,
                        &binding.resource_name,
                        outcome_of(result.error, &result.message),
                    );
                }
                Response::CreateAcls(response)
            }
            Request::DescribeAcls(request) => {
                match access.check(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                    Ok(()) => Response::DescribeAcls(self.describe_acls_request(request)),
                    Err(denial) => {
                        let (error, message) = answer(&denial, ResourceType::Cluster);
                        Response::DescribeAcls(DescribeAclsResponse {
                            error,
                            message,
                            bindings: Vec::new(),
                        })
                    }
                }
            }
            Request::DeleteAcls(request) => {
                if let Err(denial) =
                    access.check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
                {
                    let (error, message) = answer(&denial, ResourceType::Cluster);
                    let results = request
                        .filters
                        .iter()
                        .map(|_| DeleteAclsResult {
                            error,
                            message: message.clone(),
                            bindings: Vec::new(),
                        })
                        .collect();
                    return Ok(Response::DeleteAcls(
                        ledge_protocol::wire::DeleteAclsResponse { results },
                    ));
                }
                let response = self.delete_acls_request(request).await;
                for result in &response.results {
                    if result.error != ErrorCode::None {
                        record(
                            access,
                            "DeleteAcls",
                            ResourceType::Cluster,
                            CLUSTER_NAME,
                            outcome_of(result.error, &result.message),
                        );
                    }
                    for binding in &result.bindings {
                        let resource_type = ResourceType::from_code(binding.resource_type)
                            .unwrap_or(ResourceType::Cluster);
                        record(
                            access,
                            "DeleteAcls",
                            resource_type,
                            &binding.resource_name,
                            Ok(()),
                        );
                    }
                }
                Response::DeleteAcls(response)
            }
        };
        Ok(response)
    }

    /// Metadata: Describe on each named topic (denied ones answered
    /// TopicAuthorizationFailed whether or not they exist); all topics, filtered silently.
    fn metadata_authorized(&self, access: &Access, request: MetadataRequest) -> MetadataResponse {
        match request.topics {
            None => {
                let mut response = self.metadata(MetadataRequest { topics: None });
                response.topics.retain(|topic| {
                    access.allows_silently(AclOperation::Describe, ResourceType::Topic, &topic.name)
                });
                response
            }
            Some(names) => {
                let (allowed, denied) = split(names, |name| {
                    access.check(AclOperation::Describe, ResourceType::Topic, name)
                });
                let mut response = self.metadata(MetadataRequest {
                    topics: Some(allowed),
                });
                response
                    .topics
                    .extend(denied.into_iter().map(|(name, denial)| {
                        let (error, message) = answer(&denial, ResourceType::Topic);
                        TopicMetadata {
                            name,
                            error,
                            message,
                            ..TopicMetadata::default()
                        }
                    }));
                response
            }
        }
    }

    async fn alter_configs_authorized(
        &self,
        access: &Access,
        mut request: AlterConfigsRequest,
    ) -> AlterConfigsResponse {
        let (allowed, denied) = split(std::mem::take(&mut request.topics), |topic| {
            access.check(AclOperation::AlterConfigs, ResourceType::Topic, &topic.name)
        });
        request.topics = allowed;
        let validate_only = request.validate_only;
        let mut response = if request.topics.is_empty() {
            AlterConfigsResponse::default()
        } else {
            self.alter_configs(request).await
        };
        if !validate_only {
            for result in &response.topics {
                record(
                    access,
                    "AlterConfigs",
                    ResourceType::Topic,
                    &result.name,
                    outcome_of(result.error, &result.message),
                );
            }
        }
        response.topics.extend(
            denied
                .into_iter()
                .map(|(topic, denial)| denied_topic_result(topic.name, &denial)),
        );
        response
    }

    /// InitProducerId: Write on the transactional id if one is named; otherwise
    /// IdempotentWrite on the cluster or Write on at least one topic (KIP-679). The answer
    /// has no message field: a denial is a frame-level [`Refusal`].
    async fn init_producer_id_authorized(
        &self,
        access: &Access,
        request: InitProducerIdRequest,
    ) -> Result<Response, Refusal> {
        let checked = match &request.transactional_id {
            Some(id) => access
                .check(AclOperation::Write, ResourceType::TransactionalId, id)
                .map_err(|denial| (denial, ResourceType::TransactionalId)),
            None if on_cluster(access, AclOperation::IdempotentWrite)
                || access.allows_on_some(AclOperation::Write, ResourceType::Topic) =>
            {
                Ok(())
            }
            None => access
                .check(
                    AclOperation::IdempotentWrite,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                )
                .map_err(|denial| (denial, ResourceType::Cluster)),
        };
        match checked {
            Ok(()) => Ok(Response::InitProducerId(
                self.init_producer_id(request).await,
            )),
            Err((denial, resource_type)) => Err(Refusal {
                code: denial_code(resource_type),
                message: denial.to_string(),
            }),
        }
    }

    /// OffsetCommit: Read on the group (every partition refused if not), then Read on each
    /// topic. A commit from outside the group (no member id: `ledge group reset-offsets`)
    /// is an administrative change.
    async fn offset_commit_authorized(
        &self,
        access: &Access,
        mut request: ledge_protocol::wire::OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let refused_topic = |topic: ledge_protocol::wire::OffsetCommitTopic, error: ErrorCode| {
            OffsetCommitTopicResponse {
                name: topic.name,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| OffsetCommitPartitionResponse {
                        partition: partition.partition,
                        error,
                    })
                    .collect(),
            }
        };
        if let Err(denial) =
            access.check(AclOperation::Read, ResourceType::Group, &request.group_id)
        {
            let (error, message) = answer(&denial, ResourceType::Group);
            return OffsetCommitResponse {
                error,
                message,
                topics: request
                    .topics
                    .into_iter()
                    .map(|topic| refused_topic(topic, error))
                    .collect(),
            };
        }
        let (allowed, denied) = split(std::mem::take(&mut request.topics), |topic| {
            access.check(AclOperation::Read, ResourceType::Topic, &topic.name)
        });
        let administrative = request.member_id.is_empty();
        let group_id = request.group_id.clone();
        request.topics = allowed;
        let mut response = if request.topics.is_empty() {
            OffsetCommitResponse::default()
        } else {
            self.group_offset_commit(request).await
        };
        if administrative && !response.topics.is_empty() {
            record(
                access,
                "OffsetCommit (reset offsets)",
                ResourceType::Group,
                &group_id,
                outcome_of(response.error, &response.message),
            );
        }
        if let Some((_, denial)) = denied.first()
            && response.error == ErrorCode::None
            && response.message.is_empty()
        {
            // The per-partition codes carry the refusal; the message says whose.
            response.message = denial.to_string();
        }
        response.topics.extend(
            denied
                .into_iter()
                .map(|(topic, _)| refused_topic(topic, ErrorCode::TopicAuthorizationFailed)),
        );
        response
    }

    /// DeployTransform: Alter on the cluster or the transform, Read on the input, Write on
    /// the output (and the dead-letter topic under the dead-letter policy), and Create
    /// (cluster or topic) for an output the deploy creates. The transform then runs as its
    /// deployer.
    async fn deploy_transform_authorized(
        &self,
        access: &Access,
        request: DeployTransformRequest,
    ) -> DeployTransformResponse {
        let name = request.name.clone();
        let refuse = |denial: Denied, resource_type: ResourceType| {
            let (error, message) = answer(&denial, resource_type);
            DeployTransformResponse {
                error,
                message,
                version: 0,
            }
        };
        if let Err(denial) = cluster_or(access, AclOperation::Alter, ResourceType::Transform, &name)
        {
            return refuse(denial, ResourceType::Transform);
        }
        // The topics the deploy will use, as `TransformRunner::deploy` resolves them.
        let existing = self.registry.transform(&name).await;
        let output = match (&existing, request.output.is_empty()) {
            (_, false) => request.output.clone(),
            (Some(existing), true) => existing.output.clone(),
            (None, true) => format!("{}.{name}", request.input),
        };
        let mut written = vec![output];
        if request.on_error == OnError::DeadLetter {
            written.push(match (&existing, request.dead_letter_topic.is_empty()) {
                (_, false) => request.dead_letter_topic.clone(),
                (Some(existing), true) => existing.dead_letter_topic.clone(),
                (None, true) => format!("{name}.dead-letter"),
            });
        }
        if let Err(denial) = access.check(AclOperation::Read, ResourceType::Topic, &request.input) {
            return refuse(denial, ResourceType::Topic);
        }
        for topic in &written {
            if let Err(denial) = access.check(AclOperation::Write, ResourceType::Topic, topic) {
                return refuse(denial, ResourceType::Topic);
            }
            if self.registry.topic(topic).is_none()
                && let Err(denial) =
                    cluster_or(access, AclOperation::Create, ResourceType::Topic, topic)
            {
                return refuse(denial, ResourceType::Topic);
            }
        }
        let deployer = access
            .is_enforced()
            .then(|| access.identity().principal.to_string());
        let response = self.deploy_transform_request(request, deployer).await;
        record(
            access,
            "DeployTransform",
            ResourceType::Transform,
            &name,
            outcome_of(response.error, &response.message),
        );
        response
    }

    /// A table query: Describe on the transform (or the cluster), and Read on its output
    /// topic (the table holds what that topic's change records carry).
    async fn table_permits(&self, access: &Access, name: &str) -> Result<(), (ErrorCode, String)> {
        cluster_or(
            access,
            AclOperation::Describe,
            ResourceType::Transform,
            name,
        )
        .map_err(|denial| answer(&denial, ResourceType::Transform))?;
        if let Some(definition) = self.registry.transform(name).await {
            access
                .check(AclOperation::Read, ResourceType::Topic, &definition.output)
                .map_err(|denial| answer(&denial, ResourceType::Topic))?;
        }
        Ok(())
    }

    /// DescribeTransforms: the named ones need Describe (on the transform or the cluster);
    /// "all" lists those the caller may describe. Parameters only with Alter.
    async fn describe_transforms_authorized(
        &self,
        access: &Access,
        mut request: DescribeTransformsRequest,
    ) -> DescribeTransformsResponse {
        let all = request.names.is_empty();
        let (allowed, denied) = split(std::mem::take(&mut request.names), |name| {
            cluster_or(
                access,
                AclOperation::Describe,
                ResourceType::Transform,
                name,
            )
        });
        let mut response = if all || !allowed.is_empty() {
            request.names = allowed;
            self.describe_transforms(request).await
        } else {
            DescribeTransformsResponse::default()
        };
        if all {
            response
                .transforms
                .retain(|transform| sees(access, ResourceType::Transform, &transform.name));
        }
        for transform in &mut response.transforms {
            if !sees_params(access, ResourceType::Transform, &transform.name) {
                transform.params.clear();
            }
        }
        response.transforms.extend(
            denied
                .into_iter()
                .map(|(name, denial)| TransformDescription {
                    name,
                    error: ErrorCode::ResourceAuthorizationFailed,
                    last_error: denial.to_string(),
                    ..TransformDescription::default()
                }),
        );
        response
    }
}

fn denied_topic_result(name: String, denial: &Denied) -> TopicResult {
    let (error, message) = answer(denial, ResourceType::Topic);
    TopicResult {
        name,
        error,
        message,
    }
}

//! Where the broker's services meet the wire: [`Broker::handle`] maps each request to the
//! service that answers it, and each service's error enum becomes a wire [`ErrorCode`] (and
//! the message sent beside it) here and nowhere else.
//!
//! The services: the topic registry (`registry/`: topics, partitions, configs,
//! `metadata.json`, producer ids), produce (`produce.rs`), fetch and list offsets
//! (`fetch.rs`), maintenance (`maintenance.rs`: retention, compaction, disk guard,
//! verifier), groups (`groups.rs`), plug-ins (`plugins.rs`) and transforms
//! (`transforms/`). The plug-in and transform requests are answered by the
//! [`PluginHost`](super::plugins::PluginHost) and the
//! [`TransformRunner`](super::transforms::TransformRunner), whose errors become codes here.

use std::collections::BTreeMap;

use ledge_protocol::wire::{
    AlterConfigsRequest, AlterConfigsResponse, AlterTransformRequest, AlterTransformResponse,
    ApiVersionsResponse, ConfigDescription, CreateTopicsRequest, CreateTopicsResponse,
    DeleteModuleRequest, DeleteModuleResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DeployTransformRequest, DeployTransformResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeTransformsRequest, DescribeTransformsResponse, ErrorCode,
    InitProducerIdRequest, InitProducerIdResponse, ListModulesResponse, MetadataRequest,
    MetadataResponse, ModuleDescription, PartitionMetadata, ProduceRequest, ProduceResponse,
    Request, Response, TopicConfigs, TopicMetadata, TopicResult, TransformDescription,
    UploadModuleRequest, UploadModuleResponse,
};

use ledge_protocol::BatchError;

/// The answer to a SASL request that reached the broker: the listener serves SASL.
const SASL_NOT_ON_THIS_PATH: &str =
    "SASL requests are answered by the connection's listener, not on this path";

use super::Broker;
use super::authorize::Refusal;
use super::client_text::{client_text, without_paths};
use super::cluster_view::{ClusterSource, LeaderEpochError, ReplicationError};
use super::create_partitions::CreatePartitionsError;
use super::fetch::FetchError;
use super::groups::CoordinatorError;
use super::log_edges::LogEdgeError;
use super::metadata::MetadataError;
use super::plugins::{
    FetchPluginError, MalformedProducedBatch, ModuleError, NamedPluginError, PartitionerError,
    PluginError, ProduceFilterError,
};
use super::produce::{PrepareError, ProduceError};
use super::registry::{
    AddPartitionsError, AlterTopicError, CreateTopicError, DeleteTopicError, LookupError,
    PartitionCountError, ProducerIdError, RemoveModuleError, RemoveTransformError,
    SetTransformStoppedError, StoreModuleError, StoreTransformError,
};
use super::sequencing::SequencingHold;
use super::transforms::{AlterTransformError, DeclaredTransform, DeployTransformError, LinkError};
use crate::controller::admin::{AdminError, AdminRefusal, AdminRequest};
use crate::controller::decisions::ControllerError;
use crate::groups::classic::ClassicError;
use crate::groups::coordinator::GroupError;
use crate::groups::service::{GroupServiceError, OffsetsLogError};
use crate::replication::leader::{AcksAllError, LowWatermarkError};
use crate::replication::manager::ReplicaRoleError;
use crate::security::records::SecurityRefusal;
use crate::storage::log::ProducersError;
use crate::storage::{AppendError, DeleteError, Disk, ReadError};
use crate::wasm::WasmError;
use crate::wasm::batch::{params_list, params_map};

impl<D: Disk> Broker<D> {
    /// Answers one request from a caller without a client id (tests, the bench tools).
    pub async fn handle(&self, request: Request) -> Response {
        self.handle_from("", request).await
    }

    /// Answers a produce, dropping `sequencing` once every batch of it is queued in its
    /// partition's writer (or refused): a produce started after that cannot overtake it.
    /// A Kafka connection pipelines its produces this way (`kafka/connection.rs`).
    pub async fn produce_sequenced(
        &self,
        request: ProduceRequest,
        sequencing: SequencingHold,
    ) -> ProduceResponse {
        self.data.produce(request, sequencing).await
    }

    /// Answers one request from a client connection whose identity the listener
    /// established (`identity`: its principal and address), a fetch's plug-in calls drawing
    /// on `fuel` (the principal's account from
    /// [`PluginHost::fetch_fuel_account`](super::plugins::PluginHost::fetch_fuel_account)).
    /// Every request is authorized here (`authorize.rs`) when `[security] authorization` is
    /// on: a denied item is answered with its authorization code, and a whole request whose
    /// answer has no message field is refused with a frame-level [`Refusal`] (the listener
    /// sends it as the response header's error).
    pub async fn handle_as(
        &self,
        identity: &crate::security::identity::ClientIdentity,
        client_id: &str,
        request: Request,
        fuel: &crate::wasm::fuel_budget::FuelAccount,
    ) -> Result<Response, Refusal> {
        tracing::trace!(principal = %identity.principal, host = %identity.host, api = ?request.api_key(), "request");
        let access = self.access(identity);
        // Every log line of the request names its principal (see `crate::logging`).
        let span = crate::logging::request_span(&identity.principal, &request.api_key());
        tracing::Instrument::instrument(
            self.handle_authorized(&access, client_id, request, fuel),
            span,
        )
        .await
    }

    /// Answers a fetch whose plug-in calls (if it names a plug-in) draw on `fuel`, a
    /// principal's account from [`PluginHost::fetch_fuel_account`](super::plugins::PluginHost::fetch_fuel_account)
    /// (`handle` draws on the node's budget alone).
    pub async fn fetch_metered(
        &self,
        request: ledge_protocol::wire::FetchRequest,
        fuel: &crate::wasm::fuel_budget::FuelAccount,
    ) -> ledge_protocol::wire::FetchResponse {
        self.data.fetch_metered(request, fuel).await
    }

    /// Answers one request; `client_id` is the one its request header names (DescribeGroups
    /// reports it for group members).
    pub async fn handle_from(&self, client_id: &str, request: Request) -> Response {
        // One exhaustive match: a new request kind that is not answered here does not compile
        // (it used to fall through to an `unreachable!` a peer's frame could hit).
        match request {
            Request::ApiVersions(_) => Response::ApiVersions(ApiVersionsResponse {
                apis: ledge_protocol::wire::supported_api_versions(),
                node_version: env!("CARGO_PKG_VERSION").to_string(),
                frame_bytes_max: 0,
            }),
            Request::Metadata(request) => Response::Metadata(self.metadata(request)),
            Request::CreateTopics(request) => {
                Response::CreateTopics(self.create_topics(request).await)
            }
            Request::DeleteTopics(request) => {
                Response::DeleteTopics(self.delete_topics(request).await)
            }
            Request::DescribeConfigs(request) => {
                Response::DescribeConfigs(self.describe_configs(request))
            }
            Request::AlterConfigs(request) => {
                Response::AlterConfigs(self.alter_configs(request).await)
            }
            Request::InitProducerId(request) => {
                Response::InitProducerId(self.init_producer_id(request).await)
            }
            Request::Produce(request) => Response::Produce(
                self.data
                    .produce(request, SequencingHold::unobserved())
                    .await,
            ),
            Request::Fetch(request) => Response::Fetch(self.data.fetch(request).await),
            Request::ListOffsets(request) => {
                Response::ListOffsets(self.data.list_offsets(request).await)
            }
            Request::UploadModule(request) => {
                Response::UploadModule(self.upload_module(request).await)
            }
            Request::ListModules(_) => Response::ListModules(self.list_modules().await),
            Request::DeleteModule(request) => {
                Response::DeleteModule(self.delete_module(request).await)
            }
            Request::DeployTransform(request) => {
                Response::DeployTransform(self.deploy_transform_request(request, None).await)
            }
            Request::DescribeTransforms(request) => {
                Response::DescribeTransforms(self.describe_transforms(request).await)
            }
            Request::AlterTransform(request) => {
                Response::AlterTransform(self.alter_transform(request).await)
            }
            Request::DescribeCluster(_) => Response::DescribeCluster(self.describe_cluster()),
            Request::ElectLeaders(request) => {
                Response::ElectLeaders(self.elect_leaders(request).await)
            }
            Request::AlterPartitionReassignments(request) => Response::AlterPartitionReassignments(
                self.alter_partition_reassignments(request).await,
            ),
            Request::ListPartitionReassignments(request) => {
                Response::ListPartitionReassignments(self.list_partition_reassignments(request))
            }
            Request::DecommissionNode(request) => {
                Response::DecommissionNode(self.decommission_node(request).await)
            }
            // The QUIC listener answers the SASL requests itself (`transport/sasl.rs`): they
            // change the connection's identity, which the broker does not hold. One that
            // reaches the broker came from elsewhere (the simulator, a test): no exchange.
            Request::SaslHandshake(_) => {
                Response::SaslHandshake(ledge_protocol::wire::SaslHandshakeResponse {
                    error: ErrorCode::IllegalSaslState,
                    message: SASL_NOT_ON_THIS_PATH.to_owned(),
                    mechanisms: Vec::new(),
                })
            }
            Request::SaslAuthenticate(_) => {
                Response::SaslAuthenticate(ledge_protocol::wire::SaslAuthenticateResponse {
                    error: ErrorCode::IllegalSaslState,
                    message: SASL_NOT_ON_THIS_PATH.to_owned(),
                    auth_bytes: bytes::Bytes::new(),
                    session_lifetime_ms: 0,
                })
            }
            // SASL users and ACLs (`security_admin.rs`).
            Request::AlterUserScramCredentials(request) => Response::AlterUserScramCredentials(
                self.alter_user_scram_credentials(request).await,
            ),
            Request::DescribeUserScramCredentials(request) => {
                Response::DescribeUserScramCredentials(
                    self.describe_user_scram_credentials(request),
                )
            }
            Request::CreateAcls(request) => {
                Response::CreateAcls(self.create_acls_request(request).await)
            }
            Request::DescribeAcls(request) => {
                Response::DescribeAcls(self.describe_acls_request(request))
            }
            Request::DeleteAcls(request) => {
                Response::DeleteAcls(self.delete_acls_request(request).await)
            }
            // Client quotas (`quota_admin.rs`).
            Request::AlterClientQuotas(request) => {
                Response::AlterClientQuotas(self.alter_client_quotas_request(request).await)
            }
            Request::DescribeClientQuotas(request) => {
                Response::DescribeClientQuotas(self.describe_client_quotas_request(&request))
            }
            // Disaster recovery (`snapshot.rs`).
            Request::Snapshot(request) => Response::Snapshot(self.snapshot_request(request).await),
            Request::SnapshotProgress(request) => {
                Response::SnapshotProgress(self.snapshot_progress_request(&request))
            }
            // Stateful transforms' tables (`transforms/mod.rs`).
            Request::TableGet(request) => {
                Response::TableGet(self.transforms.table_get(request).await)
            }
            Request::TableScan(request) => {
                Response::TableScan(self.transforms.table_scan(request).await)
            }
            Request::CreatePartitions(request) => {
                Response::CreatePartitions(self.create_partitions(request).await)
            }
            Request::FindCoordinator(request) => {
                Response::FindCoordinator(self.find_coordinator(request).await)
            }
            Request::ConsumerGroupHeartbeat(request) => Response::ConsumerGroupHeartbeat(
                self.group_heartbeat(
                    request,
                    client_id,
                    crate::groups::coordinator::TopicFilter::default(),
                )
                .await,
            ),
            Request::OffsetCommit(request) => {
                Response::OffsetCommit(self.group_offset_commit(request).await)
            }
            Request::OffsetFetch(request) => {
                Response::OffsetFetch(self.group_offset_fetch(request).await)
            }
            // In a cluster: the groups this node coordinates (the CLI asks every node).
            Request::ListGroups(request) => Response::ListGroups(self.groups.list_groups(request)),
            Request::DescribeGroups(request) => {
                Response::DescribeGroups(self.group_describe(request).await)
            }
            Request::DeleteGroups(request) => {
                Response::DeleteGroups(self.group_delete(request).await)
            }
        }
    }

    pub(super) fn metadata(&self, request: MetadataRequest) -> MetadataResponse {
        let image = self.cluster_image();
        let current = image
            .as_ref()
            .is_some_and(|image| self.image_is_current(image));
        let names: Vec<String> = match (request.topics, &image) {
            (Some(names), _) => names,
            (None, None) => self.registry.topic_names(),
            // A cluster's topics are the image's; the node's internal ones stay local.
            (None, Some(image)) => image
                .topics
                .keys()
                .cloned()
                .chain(
                    self.registry
                        .topic_names()
                        .into_iter()
                        .filter(|name| name.starts_with("__") && !image.topics.contains_key(name)),
                )
                .collect(),
        };
        let topics = names
            .into_iter()
            .map(|name| {
                if let Some(topic) = image.as_ref().and_then(|image| image.topics.get(&name)) {
                    return self.image_topic_metadata(name, topic, current);
                }
                let local = self
                    .registry
                    .topic(&name)
                    .filter(|_| image.is_none() || name.starts_with("__"));
                match local {
                    None => TopicMetadata {
                        error: ErrorCode::UnknownTopicOrPartition,
                        internal: name.starts_with("__"),
                        name,
                        partitions: Vec::new(),
                        partitioner_module: String::new(),
                        topic_id: String::new(),
                        message: String::new(),
                    },
                    Some(topic) => TopicMetadata {
                        topic_id: topic.id().unwrap_or_default(),
                        internal: name.starts_with("__"),
                        partitioner_module: topic.config().partitioner_module.unwrap_or_default(),
                        name,
                        error: ErrorCode::None,
                        message: String::new(),
                        partitions: topic
                            .partitions()
                            .iter()
                            .map(|partition| {
                                let mut metadata = partition_metadata(partition);
                                // A controller-placed topic before the image is known here
                                // (a restarting node): no leader is claimed, so clients wait
                                // for the image rather than produce to a node that may no
                                // longer lead.
                                let leads =
                                    metadata.error == ErrorCode::None && topic.topic_id().is_none();
                                self.partition_placement(leads).fill(&mut metadata);
                                metadata
                            })
                            .collect(),
                    },
                }
            })
            .collect();
        MetadataResponse {
            node_id: self.config.node_id,
            nodes: self.cluster_nodes(),
            controller_id: self.controller_id(),
            topics,
        }
    }

    pub(super) async fn create_topics(&self, request: CreateTopicsRequest) -> CreateTopicsResponse {
        let mut results = Vec::new();
        for topic in request.topics {
            let configs: BTreeMap<String, String> = topic
                .configs
                .into_iter()
                .map(|entry| (entry.name, entry.value))
                .collect();
            // Replication is checked first: a factor the live nodes cannot hold is refused
            // before anything is validated further or stored.
            let replication = self.replication_check(topic.replication_factor, &configs);
            let outcome = if let Err(error) = replication {
                Err(CreateTopicError::Replication(error))
            } else if request.validate_only {
                self.registry
                    .validate_create(&topic.name, topic.partitions, &configs)
                    .await
            } else if topic.name.starts_with("__") {
                Err(CreateTopicError::Reserved {
                    topic: topic.name.clone(),
                })
            } else if let Some(source) = self.cluster_source.get() {
                // In a cluster: checked here with the same rules and errors as on one
                // node, then decided by the controller.
                let checked = self
                    .registry
                    .validate_create(&topic.name, topic.partitions, &configs)
                    .await;
                let outcome = match (checked, replication) {
                    (Err(error), _) => Err(create_topic_wire(&error)),
                    (Ok(()), Err(error)) => {
                        Err(create_topic_wire(&CreateTopicError::Replication(error)))
                    }
                    (Ok(()), Ok(replication_factor)) => {
                        self.controller_admin(
                            source,
                            AdminRequest::CreateTopic {
                                name: topic.name.clone(),
                                partitions: topic.partitions,
                                replication_factor,
                                configs,
                            },
                        )
                        .await
                    }
                };
                results.push(topic_result(topic.name, outcome));
                continue;
            } else {
                self.registry
                    .create_topic(&topic.name, topic.partitions, &configs)
                    .await
            };
            results.push(topic_result(
                topic.name,
                outcome.map_err(|error| create_topic_wire(&error)),
            ));
        }
        CreateTopicsResponse { topics: results }
    }

    pub(super) async fn delete_topics(&self, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let mut results = Vec::new();
        for name in request.names {
            if let Some(source) = self.cluster_source.get() {
                let outcome = match self.registry.check_deletable(&name).await {
                    Err(error) => Err(delete_topic_wire(&error)),
                    Ok(()) => {
                        self.controller_admin(
                            source,
                            AdminRequest::DeleteTopic { name: name.clone() },
                        )
                        .await
                    }
                };
                results.push(topic_result(name, outcome));
                continue;
            }
            let outcome = self.delete_topic(&name).await;
            results.push(topic_result(
                name,
                outcome.map_err(|error| delete_topic_wire(&error)),
            ));
        }
        DeleteTopicsResponse { topics: results }
    }

    /// Deletes a topic from the registry, then the committed offsets of its partitions.
    pub(super) async fn delete_topic(&self, name: &str) -> Result<(), DeleteTopicError> {
        self.registry.delete_topic(name).await?;
        self.groups.remove_topic(name);
        Ok(())
    }

    pub(super) fn describe_configs(
        &self,
        request: DescribeConfigsRequest,
    ) -> DescribeConfigsResponse {
        let topics = request
            .topics
            .into_iter()
            .map(|name| match self.topic(&name) {
                None => TopicConfigs {
                    message: format!("unknown topic {name:?}"),
                    name,
                    error: ErrorCode::UnknownTopicOrPartition,
                    configs: Vec::new(),
                },
                Some(topic) => TopicConfigs {
                    name,
                    error: ErrorCode::None,
                    message: String::new(),
                    configs: topic
                        .config()
                        .describe()
                        .into_iter()
                        .map(|(name, value, is_default)| ConfigDescription {
                            name,
                            value,
                            is_default,
                        })
                        .collect(),
                },
            })
            .collect();
        DescribeConfigsResponse { topics }
    }

    pub(super) async fn alter_configs(&self, request: AlterConfigsRequest) -> AlterConfigsResponse {
        let mut results = Vec::new();
        for topic in request.topics {
            let set: BTreeMap<String, String> = topic
                .set
                .into_iter()
                .map(|entry| (entry.name, entry.value))
                .collect();
            if !request.validate_only
                && let Some(source) = self.cluster_source.get()
            {
                let outcome = match self
                    .registry
                    .validate_alter(&topic.name, &set, &topic.delete)
                    .await
                {
                    Err(error) => Err(alter_topic_wire(&error)),
                    Ok(()) => {
                        self.controller_admin(
                            source,
                            AdminRequest::AlterTopicConfig {
                                name: topic.name.clone(),
                                set,
                                delete: topic.delete,
                            },
                        )
                        .await
                    }
                };
                results.push(topic_result(topic.name, outcome));
                continue;
            }
            let outcome = if request.validate_only {
                self.registry
                    .validate_alter(&topic.name, &set, &topic.delete)
                    .await
            } else {
                self.registry
                    .alter_topic(&topic.name, &set, &topic.delete)
                    .await
            };
            results.push(topic_result(
                topic.name,
                outcome.map_err(|error| alter_topic_wire(&error)),
            ));
        }
        AlterConfigsResponse { topics: results }
    }

    /// Has the active controller do `request`, then makes the local registry follow the
    /// image at once (so a produce to this node right after a CreateTopics finds the
    /// partitions it hosts), rather than waiting for the driver.
    pub(super) async fn controller_admin(
        &self,
        source: &ClusterSource,
        request: AdminRequest,
    ) -> Result<(), (ErrorCode, String)> {
        let Some(admin) = &source.admin else {
            return Err((
                ErrorCode::NotController,
                "this node has no controller client: topic admin is not available here".to_owned(),
            ));
        };
        let deleted = match &request {
            AdminRequest::DeleteTopic { name } => Some(name.clone()),
            _ => None,
        };
        admin
            .submit(request)
            .await
            .map_err(|error| admin_wire(&error))?;
        let image = source.image.borrow().clone();
        self.materialize(&image).await;
        if let Some(name) = deleted {
            self.groups.remove_topic(&name);
        }
        Ok(())
    }

    pub(super) async fn upload_module(&self, request: UploadModuleRequest) -> UploadModuleResponse {
        if self.cluster_source.get().is_some() {
            // In a cluster: stored here, recorded by the controller (`plugin_cluster.rs`).
            return match self.upload_module_in_cluster(request).await {
                Ok(hash) => UploadModuleResponse {
                    error: ErrorCode::None,
                    message: String::new(),
                    hash,
                },
                Err((error, message)) => UploadModuleResponse {
                    error,
                    message,
                    hash: String::new(),
                },
            };
        }
        match self.plugins.upload_module(request).await {
            Ok(hash) => UploadModuleResponse {
                error: ErrorCode::None,
                message: String::new(),
                hash,
            },
            Err(error) => {
                let (error, message) = module_wire(&error);
                UploadModuleResponse {
                    error,
                    message,
                    hash: String::new(),
                }
            }
        }
    }

    pub(super) async fn list_modules(&self) -> ListModulesResponse {
        ListModulesResponse {
            modules: self
                .plugins
                .list_modules()
                .await
                .into_iter()
                .map(|(name, module)| ModuleDescription {
                    name,
                    kind: module.kind,
                    hash: module.hash,
                    size_bytes: module.size_bytes,
                    params: params_list(&module.params),
                    uploaded_ms: module.uploaded_ms,
                })
                .collect(),
        }
    }

    pub(super) async fn delete_module(&self, request: DeleteModuleRequest) -> DeleteModuleResponse {
        if self.cluster_source.get().is_some() {
            let outcome = self
                .plugin_admin(AdminRequest::DeleteModule { name: request.name })
                .await;
            return match outcome {
                Ok(()) => DeleteModuleResponse {
                    error: ErrorCode::None,
                    message: String::new(),
                },
                Err(error) => {
                    let (error, message) = admin_wire(&error);
                    DeleteModuleResponse { error, message }
                }
            };
        }
        match self.plugins.delete_module(&request.name).await {
            Ok(()) => DeleteModuleResponse {
                error: ErrorCode::None,
                message: String::new(),
            },
            Err(error) => {
                let (error, message) = module_wire(&error);
                DeleteModuleResponse { error, message }
            }
        }
    }

    pub(super) async fn deploy_transform_request(
        &self,
        request: DeployTransformRequest,
        deployer: Option<String>,
    ) -> DeployTransformResponse {
        let join = match join_spec(&request) {
            Ok(join) => join,
            Err(message) => {
                return DeployTransformResponse {
                    error: ErrorCode::InvalidRequest,
                    message,
                    version: 0,
                };
            }
        };
        let result = match params_map(&request.params) {
            Ok(params) => {
                self.transforms
                    .deploy_as(
                        DeclaredTransform {
                            kind: request.kind,
                            on_error: request.on_error,
                            params,
                            name: request.name,
                            module: request.module,
                            input: request.input,
                            output: request.output,
                            dead_letter_topic: request.dead_letter_topic,
                            join,
                            window: request.window.map(window_settings),
                        },
                        deployer,
                    )
                    .await
            }
            Err(error) => Err(DeployTransformError::Params(error)),
        };
        match result {
            Ok(version) => DeployTransformResponse {
                error: ErrorCode::None,
                message: String::new(),
                version,
            },
            Err(error) => DeployTransformResponse {
                error: ErrorCode::from(&error),
                message: client_text(&error),
                version: 0,
            },
        }
    }

    pub(super) async fn describe_transforms(
        &self,
        request: DescribeTransformsRequest,
    ) -> DescribeTransformsResponse {
        let transforms = self
            .transforms
            .describe(request.names)
            .await
            .into_iter()
            .map(|described| match described {
                Ok(description) => description,
                Err(unknown) => TransformDescription {
                    last_error: client_text(&unknown),
                    name: unknown.name,
                    error: ErrorCode::TransformNotFound,
                    ..TransformDescription::default()
                },
            })
            .collect();
        DescribeTransformsResponse { transforms }
    }

    pub(super) async fn alter_transform(
        &self,
        request: AlterTransformRequest,
    ) -> AlterTransformResponse {
        match self.transforms.alter(&request.name, &request.action).await {
            Ok(()) => AlterTransformResponse {
                error: ErrorCode::None,
                message: String::new(),
            },
            Err(error) => AlterTransformResponse {
                error: ErrorCode::from(&error),
                message: client_text(&error),
            },
        }
    }

    pub(super) async fn init_producer_id(
        &self,
        request: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        if request.transactional_id.is_some() {
            return InitProducerIdResponse {
                error: ErrorCode::InvalidRequest,
                producer_id: -1,
                producer_epoch: -1,
            };
        }
        // In a cluster the ids come from the controller's blocks, unique across nodes;
        // alone, from this node's durable counter.
        let cluster_admin = self
            .cluster_source
            .get()
            .and_then(|source| source.admin.clone());
        let allocated = match cluster_admin {
            Some(admin) => self.registry.allocate_cluster_producer_id(admin).await,
            None => self.registry.allocate_producer_id().await,
        };
        match allocated {
            Ok(producer_id) => InitProducerIdResponse {
                error: ErrorCode::None,
                producer_id,
                producer_epoch: 0,
            },
            Err(error) => {
                match &error {
                    ProducerIdError::Held => {}
                    // Retriable (an election, a partition): the client asks again.
                    ProducerIdError::Controller(_) => {
                        tracing::info!(%error, "no producer id handed out yet");
                    }
                    _ => tracing::error!(%error, "no producer id handed out"),
                }
                InitProducerIdResponse {
                    error: producer_id_code(&error),
                    producer_id: -1,
                    producer_epoch: -1,
                }
            }
        }
    }
}

/// A partition's Metadata entry from its local log (placement left for the caller): its
/// offsets and log figures, or the reason it cannot be used.
pub(super) fn partition_metadata<D: Disk>(
    partition: &super::registry::Partition<D>,
) -> PartitionMetadata {
    match partition.online_log() {
        Ok(log) => {
            let (dirty, sealed) = log.compaction_stats();
            PartitionMetadata {
                partition: partition.key().partition,
                error: ErrorCode::None,
                log_start_offset: log.log_start_offset(),
                high_watermark: log.high_watermark(),
                size_bytes: log.size_bytes(),
                segment_count: log.segment_count() as u32,
                dirty_ratio_per_mille: (dirty * 1000)
                    .checked_div(sealed)
                    .map_or(0, |ratio| ratio as u16),
                last_compaction_ms: log.last_compaction_ms(),
                damage: log
                    .damage()
                    .map(|damage| without_paths(&damage.to_string()))
                    .unwrap_or_default(),
                record_count: log.record_count(),
                ..PartitionMetadata::default()
            }
        }
        Err(error) => PartitionMetadata {
            partition: partition.key().partition,
            error: lookup_code(&error),
            log_start_offset: -1,
            high_watermark: -1,
            damage: client_text(&error),
            ..PartitionMetadata::default()
        },
    }
}

/// The code for a topic or partition that cannot be used.
pub(super) fn lookup_code(error: &LookupError) -> ErrorCode {
    match error {
        LookupError::UnknownTopic { .. } | LookupError::UnknownPartition { .. } => {
            ErrorCode::UnknownTopicOrPartition
        }
        LookupError::Offline { .. } => ErrorCode::PartitionOffline,
        LookupError::NotHosted { .. } => ErrorCode::NotLeaderOrFollower,
    }
}

fn partition_count_code(_: &PartitionCountError) -> ErrorCode {
    ErrorCode::InvalidPartitions
}

/// The code and message for a topic that was not created.
pub(super) fn create_topic_wire(error: &CreateTopicError) -> (ErrorCode, String) {
    (create_topic_code(error), client_text(error))
}

fn create_topic_code(error: &CreateTopicError) -> ErrorCode {
    match error {
        CreateTopicError::InvalidName(_) | CreateTopicError::Reserved { .. } => {
            ErrorCode::InvalidTopic
        }
        CreateTopicError::InvalidConfig(_) | CreateTopicError::ModuleReference(_) => {
            ErrorCode::InvalidConfig
        }
        CreateTopicError::AlreadyExists { .. } => ErrorCode::TopicAlreadyExists,
        CreateTopicError::Replication(error) => replication_code(error),
        CreateTopicError::PartitionCount(error) => partition_count_code(error),
        CreateTopicError::Record { source, .. } => metadata_code(source),
        // Retriable, like any disk failure: nothing was recorded.
        CreateTopicError::PartitionNotCreated(_) => ErrorCode::StorageError,
        // Nothing was created; another try draws again.
        CreateTopicError::NoTopicId { .. } => ErrorCode::UnknownServerError,
    }
}

/// The code and message for a topic that did not grow.
pub(super) fn create_partitions_wire(error: &CreatePartitionsError) -> (ErrorCode, String) {
    let code = match error {
        CreatePartitionsError::Internal { .. } => ErrorCode::InternalTopic,
        CreatePartitionsError::Assignment(_) => ErrorCode::InvalidReplicaAssignment,
        // Kafka's POLICY_VIOLATION has no Ledge code; the request as sent cannot succeed.
        CreatePartitionsError::Declared { .. } => ErrorCode::InvalidRequest,
        CreatePartitionsError::Registry(error) => match error {
            AddPartitionsError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
            AddPartitionsError::Shrink { .. } | AddPartitionsError::Unchanged { .. } => {
                ErrorCode::InvalidPartitions
            }
            AddPartitionsError::PartitionCount(error) => partition_count_code(error),
            AddPartitionsError::Record { source, .. } => metadata_code(source),
            // Retriable, like any disk failure: nothing was recorded.
            AddPartitionsError::PartitionNotCreated(_) => ErrorCode::StorageError,
        },
    };
    (code, client_text(error))
}

/// The code and message for a decision the controller would refuse, checked on this node
/// (as the controller answers it once forwarded).
pub(super) fn controller_wire(error: &ControllerError) -> (ErrorCode, String) {
    (refusal_code(AdminRefusal::of(error)), client_text(error))
}

/// The code and message for a topic admin request the controller did not do.
pub(super) fn admin_wire(error: &AdminError) -> (ErrorCode, String) {
    let code = match error {
        AdminError::Refused { refusal, .. } => refusal_code(*refusal),
        AdminError::TimedOut { .. } => ErrorCode::RequestTimedOut,
        AdminError::Failed(_) => ErrorCode::UnknownServerError,
    };
    (code, client_text(error))
}

fn refusal_code(refusal: AdminRefusal) -> ErrorCode {
    match refusal {
        AdminRefusal::InvalidTopic => ErrorCode::InvalidTopic,
        AdminRefusal::InvalidReplicationFactor => ErrorCode::InvalidReplicationFactor,
        AdminRefusal::InvalidConfig => ErrorCode::InvalidConfig,
        AdminRefusal::InvalidPartitions => ErrorCode::InvalidPartitions,
        AdminRefusal::TopicAlreadyExists => ErrorCode::TopicAlreadyExists,
        AdminRefusal::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        AdminRefusal::InvalidReplicaAssignment => ErrorCode::InvalidReplicaAssignment,
        AdminRefusal::ReassignmentInProgress => ErrorCode::ReassignmentInProgress,
        AdminRefusal::NoReassignmentInProgress => ErrorCode::NoReassignmentInProgress,
        AdminRefusal::NodeInUse => ErrorCode::NodeInUse,
        // As on one node (`module_code`, `AlterTransformError`).
        AdminRefusal::ModuleNotFound => ErrorCode::ModuleNotFound,
        AdminRefusal::TransformNotFound => ErrorCode::TransformNotFound,
        AdminRefusal::ModuleInUse => ErrorCode::ModuleInUse,
        AdminRefusal::InvalidRequest => ErrorCode::InvalidRequest,
        AdminRefusal::Security(refusal) => security_refusal_code(refusal),
        AdminRefusal::Internal => ErrorCode::UnknownServerError,
    }
}

/// The native code of a refused user or ACL change.
pub(crate) fn security_refusal_code(refusal: SecurityRefusal) -> ErrorCode {
    match refusal {
        SecurityRefusal::UnacceptableCredential => ErrorCode::UnacceptableCredential,
        SecurityRefusal::UnsupportedSaslMechanism => ErrorCode::UnsupportedSaslMechanism,
        SecurityRefusal::ResourceNotFound => ErrorCode::ResourceNotFound,
        SecurityRefusal::DuplicateResource => ErrorCode::DuplicateResource,
        SecurityRefusal::LimitExceeded => ErrorCode::PolicyViolation,
        SecurityRefusal::InvalidRequest => ErrorCode::InvalidRequest,
    }
}

/// The code for refused replication settings: the factor itself, or a topic config
/// (`min.insync.replicas`) that contradicts it.
fn replication_code(error: &ReplicationError) -> ErrorCode {
    match error {
        ReplicationError::ZeroReplicationFactor | ReplicationError::AboveLiveNodes { .. } => {
            ErrorCode::InvalidReplicationFactor
        }
        ReplicationError::MinInsyncAboveReplicationFactor { .. } => ErrorCode::InvalidConfig,
    }
}

/// The code and message for a produce or fetch at a leader epoch this node does not lead at.
pub(super) fn leader_epoch_wire(error: &LeaderEpochError) -> (ErrorCode, String) {
    let code = match error {
        LeaderEpochError::Fenced { .. } => ErrorCode::FencedLeaderEpoch,
        LeaderEpochError::Unknown { .. } => ErrorCode::UnknownLeaderEpoch,
    };
    (code, client_text(error))
}

/// The code and message for a topic whose configs were not changed.
pub(super) fn alter_topic_wire(error: &AlterTopicError) -> (ErrorCode, String) {
    let code = match error {
        AlterTopicError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        AlterTopicError::UnknownKey { .. }
        | AlterTopicError::InvalidConfig(_)
        | AlterTopicError::ModuleReference(_) => ErrorCode::InvalidConfig,
        AlterTopicError::Record { source, .. } => metadata_code(source),
    };
    (code, client_text(error))
}

/// The code and message for a topic that was not deleted.
pub(super) fn delete_topic_wire(error: &DeleteTopicError) -> (ErrorCode, String) {
    let code = match error {
        DeleteTopicError::Internal { .. } => ErrorCode::InternalTopic,
        DeleteTopicError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        DeleteTopicError::InUse { .. } => ErrorCode::TopicInUse,
        DeleteTopicError::Record { source, .. } => metadata_code(source),
    };
    (code, client_text(error))
}

/// The code for a producer id that was not handed out. Every cause is `StorageError`
/// (retriable) but a failed reservation, which says what the metadata store said.
pub(super) fn producer_id_code(error: &ProducerIdError) -> ErrorCode {
    match error {
        ProducerIdError::Held | ProducerIdError::Exhausted | ProducerIdError::Disk(_) => {
            ErrorCode::StorageError
        }
        ProducerIdError::Record(source) => metadata_code(source),
        // No controller reachable now (an election, a partition): retriable.
        ProducerIdError::Controller(_) => ErrorCode::CoordinatorNotAvailable,
    }
}

/// The code for a change `metadata.json` did not record: `InvalidRequest` when the change
/// itself is too big (retrying cannot help), `StorageError` otherwise.
pub(super) fn metadata_code(error: &MetadataError) -> ErrorCode {
    match error {
        MetadataError::TooLarge { .. } => ErrorCode::InvalidRequest,
        MetadataError::Disk(_) | MetadataError::Invalid { .. } | MetadataError::Unsafe { .. } => {
            ErrorCode::StorageError
        }
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
        ProduceError::NoBatches => ErrorCode::CorruptMessage,
        ProduceError::MalformedBatch(error) => batch_code(error),
        ProduceError::InvalidTimestamp(_) => ErrorCode::InvalidTimestamp,
        ProduceError::Prepare(error) => prepare_code(error),
        ProduceError::Append(error) => append_code(error),
        ProduceError::Filter(error) => produce_filter_code(error),
        ProduceError::Partitioner(error) => partitioner_code(error),
        ProduceError::TimedOut { .. } => ErrorCode::RequestTimedOut,
        ProduceError::Replication(error) => replica_role_code(error),
        ProduceError::AcksAll(error) => acks_all_code(error),
    };
    (code, client_text(error))
}

/// The code of a produce or fetch replication refused before touching the log.
fn replica_role_code(error: &ReplicaRoleError) -> ErrorCode {
    match error {
        ReplicaRoleError::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
        ReplicaRoleError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
    }
}

/// The code of an acks=all produce appended on the leader but not confirmed.
fn acks_all_code(error: &AcksAllError) -> ErrorCode {
    match error {
        AcksAllError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
        AcksAllError::NotEnoughReplicasAfterAppend { .. } => {
            ErrorCode::NotEnoughReplicasAfterAppend
        }
        AcksAllError::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
        AcksAllError::RequestTimedOut => ErrorCode::RequestTimedOut,
    }
}

fn prepare_code(error: &PrepareError) -> ErrorCode {
    match error {
        PrepareError::Undecodable(error) => undecodable_batch_code(error),
        PrepareError::NoRecords | PrepareError::Reencode(_) | PrepareError::AppendTime(_) => {
            ErrorCode::CorruptMessage
        }
    }
}

/// The error code for a produced batch a node path could not decode: damaged in transit
/// (`CorruptMessage`, retriable) if its framing or CRC fails, otherwise written that way by
/// the producer (`InvalidRecord`, as `PartitionLog::append` answers it), which a retry
/// cannot fix.
fn undecodable_batch_code(error: &ledge_protocol::DecodeError) -> ErrorCode {
    match error {
        ledge_protocol::DecodeError::Batch(error) => batch_code(error),
        _ => ErrorCode::InvalidRecord,
    }
}

/// The error code for a batch refused by its header: framing and CRC failures are damage in
/// transit (`CorruptMessage`, retriable); a header whose fields disagree under an intact CRC
/// (a record count that lies, offsets that overflow, an unknown codec) was written so by the
/// producer (`InvalidRecord`, as Kafka's `LogValidator` answers it), and the same bytes would
/// fail again. The CRC is checked before the fields (`validate_batch`), so a field error
/// never hides damage.
fn batch_code(error: &BatchError) -> ErrorCode {
    match error {
        BatchError::BadLastOffsetDelta { .. }
        | BatchError::BadMagic(_)
        | BatchError::BadRecordCount(_)
        | BatchError::OffsetOverflow { .. }
        | BatchError::TimestampOrder { .. }
        | BatchError::UnknownCompression(_) => ErrorCode::InvalidRecord,
        _ => ErrorCode::CorruptMessage,
    }
}

/// The code for a failed plug-in call or a refused module.
fn wasm_error_code(error: &WasmError) -> ErrorCode {
    match error {
        WasmError::InvalidModule(_) | WasmError::ModuleTooLarge { .. } | WasmError::Init(_) => {
            ErrorCode::InvalidModule
        }
        WasmError::Engine(_) => ErrorCode::UnknownServerError,
        _ => ErrorCode::ModuleFailed,
    }
}

/// The code of a failed append, for produce, the partitioner, transforms and the group
/// service's offsets log alike.
fn append_code(error: &AppendError) -> ErrorCode {
    match error {
        AppendError::InvalidBatch(error) => batch_code(error),
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
        // Only a follower's copy of its leader's batches can fail so; never a client's.
        AppendError::NotContinuing { .. } => ErrorCode::CorruptMessage,
    }
}

/// The code and message for one partition of a fetch or list-offsets.
pub(super) fn fetch_wire(error: &FetchError) -> (ErrorCode, String) {
    let code = match error {
        FetchError::Lookup(error) => lookup_code(error),
        FetchError::Read(ReadError::OffsetOutOfRange { .. }) => ErrorCode::OffsetOutOfRange,
        FetchError::Read(ReadError::Corrupt { .. }) | FetchError::Damaged { .. } => {
            ErrorCode::DataDamaged
        }
        FetchError::Read(_) | FetchError::OffsetLookup(_) => ErrorCode::StorageError,
        FetchError::Plugin(error) => fetch_plugin_code(error),
        FetchError::Replication(error) => replica_role_code(error),
        FetchError::OffsetNotAvailable { .. } => ErrorCode::OffsetNotAvailable,
    };
    (code, client_text(error))
}

/// The code and message for a partition whose leader epochs or log start were not answered
/// (`log_edges.rs`: Kafka's ListOffsets epochs, OffsetForLeaderEpoch, DeleteRecords).
pub(super) fn log_edge_wire(error: &LogEdgeError) -> (ErrorCode, String) {
    let code = match error {
        LogEdgeError::Partition(error) => fetch_wire(error).0,
        LogEdgeError::LeaderEpoch(error) => leader_epoch_wire(error).0,
        LogEdgeError::BeyondHighWatermark { .. } => ErrorCode::OffsetOutOfRange,
        // Fenced or closing: the log is leaving this node; the client finds the new leader.
        LogEdgeError::Delete(DeleteError::Fenced { .. } | DeleteError::Closed) => {
            ErrorCode::NotLeaderOrFollower
        }
        LogEdgeError::Delete(DeleteError::BeyondHighWatermark { .. }) => {
            ErrorCode::OffsetOutOfRange
        }
        LogEdgeError::Delete(DeleteError::Disk(_)) => ErrorCode::StorageError,
        // Closing: the log is leaving this node.
        LogEdgeError::Producers(ProducersError::Closed) => ErrorCode::NotLeaderOrFollower,
        LogEdgeError::Producers(ProducersError::ReadOnly(_)) => ErrorCode::StorageError,
        LogEdgeError::LowWatermark(LowWatermarkError::NotLeaderOrFollower) => {
            ErrorCode::NotLeaderOrFollower
        }
        LogEdgeError::LowWatermark(LowWatermarkError::RequestTimedOut) => {
            ErrorCode::RequestTimedOut
        }
    };
    (code, client_text(error))
}

// The group service (`crate::groups::service`).

impl From<&GroupError> for ErrorCode {
    fn from(error: &GroupError) -> Self {
        match error {
            GroupError::InvalidGroupId(_) => Self::InvalidGroupId,
            GroupError::InvalidMemberId(_) => Self::InvalidRequest,
            GroupError::UnknownMember { .. } => Self::UnknownMemberId,
            GroupError::InconsistentAssignor(_) => Self::InconsistentGroupProtocol,
            GroupError::GroupFull { .. } | GroupError::TooManyGroups(_) => {
                Self::GroupMaxSizeReached
            }
            GroupError::InvalidPattern { .. } => Self::InvalidRegularExpression,
            GroupError::InvalidTimeout(_) => Self::InvalidRequest,
            GroupError::NonEmptyGroup(_) => Self::NonEmptyGroup,
            GroupError::UnknownGroup(_) => Self::GroupIdNotFound,
            GroupError::FencedEpoch { .. } => Self::FencedMemberEpoch,
            // Native commits use `CommitEpochRule::NotNewer`, which never answers this; the
            // nearest native code if one ever does.
            GroupError::StaleEpoch { .. } => Self::FencedMemberEpoch,
        }
    }
}

impl From<&OffsetsLogError> for ErrorCode {
    fn from(error: &OffsetsLogError) -> Self {
        match error {
            OffsetsLogError::Missing => Self::UnknownTopicOrPartition,
            OffsetsLogError::Offline { .. } => Self::PartitionOffline,
            OffsetsLogError::Append(error) => append_code(error),
            OffsetsLogError::Encode(_) => Self::UnknownServerError,
            OffsetsLogError::NotLeader
            | OffsetsLogError::NotReplicated(AcksAllError::NotLeaderOrFollower) => {
                Self::NotCoordinator
            }
            OffsetsLogError::NotReplicated(error) => acks_all_code(error),
        }
    }
}

impl From<&CoordinatorError> for ErrorCode {
    fn from(error: &CoordinatorError) -> Self {
        match error {
            CoordinatorError::NotCoordinator { .. } => Self::NotCoordinator,
            CoordinatorError::NotAvailable { .. } => Self::CoordinatorNotAvailable,
        }
    }
}

impl From<&GroupServiceError> for ErrorCode {
    fn from(error: &GroupServiceError) -> Self {
        match error {
            GroupServiceError::Group(error) => error.into(),
            GroupServiceError::TransformGroup { .. } => Self::InvalidGroupId,
            GroupServiceError::MetadataTooLong { .. } => Self::InvalidRequest,
            GroupServiceError::NotFound(_) => Self::GroupIdNotFound,
            GroupServiceError::OffsetsLog(error) => error.into(),
            GroupServiceError::Classic(error) => error.into(),
            GroupServiceError::ClassicGroupInUse { .. } => Self::InconsistentGroupProtocol,
        }
    }
}

/// Classic (Kafka JoinGroup) refusals as QUIC sees them (a QUIC commit or describe touching a
/// classic group); the Kafka listener maps them to Kafka's own codes in `kafka::groups`.
impl From<&ClassicError> for ErrorCode {
    fn from(error: &ClassicError) -> Self {
        match error {
            ClassicError::InvalidGroupId(_) => Self::InvalidGroupId,
            ClassicError::InconsistentGroupProtocol(_) => Self::InconsistentGroupProtocol,
            ClassicError::InvalidSessionTimeout { .. } => Self::InvalidRequest,
            ClassicError::UnknownMember { .. }
            | ClassicError::MemberIdRequired { .. }
            | ClassicError::IllegalGeneration { .. }
            | ClassicError::RebalanceInProgress(_) => Self::UnknownMemberId,
            ClassicError::FencedInstanceId { .. } => Self::FencedInstanceId,
            ClassicError::GroupFull { .. } | ClassicError::TooManyGroups(_) => {
                Self::GroupMaxSizeReached
            }
            ClassicError::NonEmptyGroup(_) => Self::NonEmptyGroup,
            ClassicError::GroupRemoved(_) => Self::NotCoordinator,
        }
    }
}

// The plug-in host (`plugins.rs`).

impl From<&PluginError> for ErrorCode {
    fn from(error: &PluginError) -> Self {
        match error {
            PluginError::Module(_) => Self::InvalidModule,
            PluginError::Instantiate(error) => wasm_error_code(error),
            PluginError::Task(_) => Self::UnknownServerError,
        }
    }
}

/// The code for a named module that could not be made a plug-in.
fn named_plugin_code(error: &NamedPluginError) -> ErrorCode {
    match error {
        NamedPluginError::NotFound { .. } => ErrorCode::ModuleNotFound,
        NamedPluginError::WrongKind { .. } => ErrorCode::InvalidModule,
        NamedPluginError::Instantiate(error) => error.into(),
    }
}

/// `CorruptMessage` (retriable: damaged in transit) if the batch's framing or CRC fails,
/// `InvalidRecord` if the producer wrote records that do not match their intact header, as
/// an append answers it.
fn malformed_produced_code(error: &MalformedProducedBatch) -> ErrorCode {
    if error.framing_intact {
        ErrorCode::InvalidRecord
    } else {
        ErrorCode::CorruptMessage
    }
}

fn produce_filter_code(error: &ProduceFilterError) -> ErrorCode {
    match error {
        ProduceFilterError::Plugin(error) => named_plugin_code(error),
        ProduceFilterError::Malformed(error) => malformed_produced_code(error),
        ProduceFilterError::Failed { error, .. } => wasm_error_code(error),
        ProduceFilterError::RecordRefused { .. } => ErrorCode::InvalidRecord,
        ProduceFilterError::Reencode(_) => ErrorCode::UnknownServerError,
    }
}

fn partitioner_code(error: &PartitionerError) -> ErrorCode {
    match error {
        PartitionerError::NoPartitioner { .. } | PartitionerError::Idempotent => {
            ErrorCode::InvalidRequest
        }
        PartitionerError::Plugin(error) => named_plugin_code(error),
        PartitionerError::Malformed(error) => malformed_produced_code(error),
        PartitionerError::Failed { error, .. } => wasm_error_code(error),
        PartitionerError::RecordFailed { .. } => ErrorCode::InvalidRecord,
        PartitionerError::NotAPartition { .. } => ErrorCode::ModuleFailed,
        PartitionerError::Encode(_) | PartitionerError::EncodedHeader(_) => {
            ErrorCode::UnknownServerError
        }
        PartitionerError::Leader { source, .. } => match source {
            // The leader's own answer (NotEnoughReplicas, a timeout, a refused record).
            LinkError::Refused { code, .. } => *code,
            LinkError::NoLeader { .. } => ErrorCode::NotLeaderOrFollower,
            LinkError::Unreachable { .. } => ErrorCode::RequestTimedOut,
            LinkError::Closed => ErrorCode::UnknownServerError,
        },
    }
}

fn fetch_plugin_code(error: &FetchPluginError) -> ErrorCode {
    match error {
        FetchPluginError::Params(_) => ErrorCode::InvalidRequest,
        FetchPluginError::Plugin(error) => named_plugin_code(error),
        FetchPluginError::StoredBatch(_) => ErrorCode::CorruptMessage,
        FetchPluginError::Failed { error, .. } => wasm_error_code(error),
        FetchPluginError::RecordFailed { .. } => ErrorCode::ModuleFailed,
        FetchPluginError::FuelSpent(_) => ErrorCode::TooManyRequests,
        FetchPluginError::Placeholder(_) | FetchPluginError::Reencode(_) => {
            ErrorCode::UnknownServerError
        }
    }
}

/// The code and message for a module that was not uploaded or deleted.
pub(super) fn module_wire(error: &ModuleError) -> (ErrorCode, String) {
    (module_code(error), client_text(error))
}

fn module_code(error: &ModuleError) -> ErrorCode {
    match error {
        ModuleError::InvalidName(_)
        | ModuleError::Params(_)
        | ModuleError::ParamsTooLarge { .. }
        | ModuleError::Register(StoreModuleError::TooMany { .. }) => ErrorCode::InvalidRequest,
        ModuleError::KindInUse { .. } | ModuleError::Remove(RemoveModuleError::InUse { .. }) => {
            ErrorCode::ModuleInUse
        }
        ModuleError::Invalid(error) => wasm_error_code(error),
        ModuleError::Store(_) => ErrorCode::StorageError,
        ModuleError::Instantiate(error) => error.into(),
        ModuleError::Register(StoreModuleError::Record { source, .. })
        | ModuleError::Remove(RemoveModuleError::Record(source)) => metadata_code(source),
        ModuleError::Remove(RemoveModuleError::NotFound { .. }) => ErrorCode::ModuleNotFound,
    }
}

// The transform runner (`transforms/`).

/// A deploy request's join input: `join_table` or `join_with` (not both), the window
/// settings only with `join_with`. Errors name the setting.
fn join_spec(
    request: &DeployTransformRequest,
) -> Result<Option<super::metadata::JoinSpec>, String> {
    use super::metadata::{JoinKind, JoinSpec};
    let window_set =
        request.join_before_ms != 0 || request.join_after_ms != 0 || request.join_grace_ms != 0;
    match (request.join_table.is_empty(), request.join_with.is_empty()) {
        (true, true) if window_set => Err(
            "join.before_ms, join.after_ms and join.grace_ms need join.with (a stream-stream join)"
                .to_string(),
        ),
        (true, true) => Ok(None),
        (false, false) => {
            Err("join.table and join.with are exclusive: a join has one second input".to_string())
        }
        (false, true) if window_set => Err(
            "join.before_ms, join.after_ms and join.grace_ms are for join.with; a join.table \
             has no window"
                .to_string(),
        ),
        (false, true) => Ok(Some(JoinSpec {
            right: request.join_table.clone(),
            kind: JoinKind::Table,
        })),
        (true, false) => Ok(Some(JoinSpec {
            right: request.join_with.clone(),
            kind: JoinKind::Stream {
                before_ms: request.join_before_ms,
                after_ms: request.join_after_ms,
                grace_ms: request.join_grace_ms,
            },
        })),
    }
}

impl From<&DeployTransformError> for ErrorCode {
    fn from(error: &DeployTransformError) -> Self {
        match error {
            DeployTransformError::InvalidName(_)
            | DeployTransformError::Params(_)
            | DeployTransformError::TooMany(_)
            | DeployTransformError::VersionsExhausted { .. }
            | DeployTransformError::StatefulInCluster
            | DeployTransformError::Window(_)
            | DeployTransformError::WindowNotAggregate(_)
            | DeployTransformError::StateChanged { .. } => Self::InvalidRequest,
            DeployTransformError::SessionWithoutMerge => Self::InvalidModule,
            DeployTransformError::UnknownInput(_) => Self::UnknownTopicOrPartition,
            DeployTransformError::InternalInput => Self::InternalTopic,
            DeployTransformError::JoinSetting(_) | DeployTransformError::CoPartitioning { .. } => {
                Self::InvalidRequest
            }
            DeployTransformError::UnknownJoinInput(_) => Self::UnknownTopicOrPartition,
            DeployTransformError::InvalidTopicName(_)
            | DeployTransformError::ForbiddenOutput(_) => Self::InvalidTopic,
            DeployTransformError::InputChanged { .. } => Self::TransformAlreadyExists,
            DeployTransformError::Module(error) => module_code(error),
            DeployTransformError::Controller(error) => admin_wire(error).0,
            DeployTransformError::Topic(error) => create_topic_code(error),
            DeployTransformError::Record(StoreTransformError { source, .. }) => {
                metadata_code(source)
            }
        }
    }
}

impl From<&AlterTransformError> for ErrorCode {
    fn from(error: &AlterTransformError) -> Self {
        match error {
            AlterTransformError::Stopped(SetTransformStoppedError::NotFound(_))
            | AlterTransformError::Remove(RemoveTransformError::NotFound(_)) => {
                Self::TransformNotFound
            }
            AlterTransformError::UnknownAction(_) => Self::InvalidRequest,
            AlterTransformError::Controller(error) => admin_wire(error).0,
            AlterTransformError::Stopped(SetTransformStoppedError::Record(
                StoreTransformError { source, .. },
            ))
            | AlterTransformError::Remove(RemoveTransformError::Record(source)) => {
                metadata_code(source)
            }
        }
    }
}

/// The native code of a user or ACL change that was not made.
pub(crate) fn security_write_code(error: &crate::security::store::SecurityWriteError) -> ErrorCode {
    use crate::security::store::SecurityWriteError;
    match error {
        SecurityWriteError::Refused { refusal, .. } => security_refusal_code(*refusal),
        SecurityWriteError::ReadOnly | SecurityWriteError::Persist => ErrorCode::StorageError,
        SecurityWriteError::Controller(_) => ErrorCode::UnknownServerError,
    }
}

/// A deploy request's window as the runner's settings (resolved and validated there).
pub(super) fn window_settings(
    window: ledge_protocol::wire::TransformWindow,
) -> crate::streams::window::WindowSettings {
    let text = |value: String| (!value.is_empty()).then_some(value);
    crate::streams::window::WindowSettings {
        kind: text(window.kind),
        size_ms: window.size_ms,
        advance_ms: window.advance_ms,
        gap_ms: window.gap_ms,
        grace_ms: window.grace_ms,
        retention_ms: window.retention_ms,
        emit: text(window.emit),
    }
}

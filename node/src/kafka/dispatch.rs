//! Answers decoded Kafka requests: one arm per served API (the table in
//! [`apis`](super::apis)), each calling its handler in [`handlers`].
//!
//! Each request comes with its caller's [`Access`] (the connection's identity as of the
//! request, and the ACLs when authorization is on); every arm hands it to its handler, or
//! to the wrapper in [`authorize`] that checks the request first. Only
//! ApiVersions and SaslHandshake/SaslAuthenticate check nothing, as on Kafka.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::KafkaSettings;
use super::apis::{KafkaRequest, KafkaResponse};
use super::authorize;
use super::codec::DecodedRequest;
use super::consumer_groups;
use super::fetch_sessions::FetchSessionCache;
use super::groups;
use super::handlers::{self, NodeAddresses};
use super::sasl::{self, KafkaSasl};
use crate::broker::Broker;
use crate::broker::sequencing::SequencingHold;
use crate::security::access::Access;
use crate::security::identity::ClientIdentity;
use crate::storage::Disk;

/// What the connection does with a request's outcome.
#[derive(Debug)]
pub enum Reply {
    /// Send this answer.
    Answer(KafkaResponse),
    /// Send nothing (a produce with acks=0).
    Nothing,
    /// Send nothing and close the connection (a produce with acks=0 that was denied).
    Close,
}

impl Reply {
    /// The answer to send, if any.
    pub fn answer(self) -> Option<KafkaResponse> {
        match self {
            Self::Answer(response) => Some(response),
            Self::Nothing | Self::Close => None,
        }
    }
}

/// Which of the node's Kafka sockets a connection came in on: Metadata answered there lists
/// every node at its address of the same kind, as Kafka's brokers answer per listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// `kafka.listen`.
    Plaintext,
    /// `kafka.tls_listen`.
    Tls,
}

/// The Kafka listener's view of the node: the broker, where clients reach this node, and
/// the node's fetch sessions.
pub struct KafkaService<D: Disk> {
    broker: Arc<Broker<D>>,
    /// The node's fetch session cache, shared by its plaintext and TLS services (a client
    /// may reconnect on either; Kafka's cache is one per broker too).
    fetch_sessions: Arc<Mutex<FetchSessionCache>>,
    settings: KafkaSettings,
    /// `host:port` Metadata lists for this node.
    advertised: String,
    /// The socket this service answers on.
    kind: ListenerKind,
    /// SASL on this socket (off unless [`KafkaService::with_sasl`]).
    sasl: Arc<KafkaSasl>,
    /// Client quotas and per-principal connection limits (none unless
    /// [`KafkaService::with_quotas`]; enforced by `connection.rs`).
    quotas: Option<Arc<crate::security::quota::ClientQuotaManager>>,
}

impl<D: Disk> KafkaService<D> {
    /// A service over `broker` for the `kind` socket, with the node's `fetch_sessions`;
    /// Metadata lists this node at `advertised` (`host:port`).
    pub fn new(
        broker: Arc<Broker<D>>,
        fetch_sessions: Arc<Mutex<FetchSessionCache>>,
        settings: KafkaSettings,
        advertised: String,
        kind: ListenerKind,
    ) -> Self {
        Self {
            broker,
            fetch_sessions,
            settings,
            advertised,
            kind,
            sasl: Arc::new(KafkaSasl::off()),
            quotas: None,
        }
    }

    /// This service with the node's client quotas (shared with the QUIC listener).
    pub fn with_quotas(mut self, quotas: Arc<crate::security::quota::ClientQuotaManager>) -> Self {
        self.quotas = Some(quotas);
        self
    }

    /// The node's client quotas, if enforced.
    pub fn quotas(&self) -> Option<&Arc<crate::security::quota::ClientQuotaManager>> {
        self.quotas.as_ref()
    }

    /// This service with SASL as `sasl` says (the listener's, shared by its sockets).
    pub fn with_sasl(mut self, sasl: Arc<KafkaSasl>) -> Self {
        self.sasl = sasl;
        self
    }

    /// SASL on this socket.
    pub fn sasl(&self) -> &Arc<KafkaSasl> {
        &self.sasl
    }

    /// The socket this service answers on.
    pub fn kind(&self) -> ListenerKind {
        self.kind
    }

    /// The listener's settings.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The node's audit log, once installed (authentication failures are recorded there).
    pub fn audit_log(&self) -> Option<Arc<crate::security::audit::AuditLog>> {
        self.broker.audit_log().cloned()
    }

    /// What a request from `identity` may do, as of now (one per request: an `Arc` clone).
    pub fn access(&self, identity: &ClientIdentity) -> Access {
        self.broker.access(identity)
    }

    /// Answers one request from the caller `access` describes: [`Reply::Nothing`] when
    /// Kafka sends no answer (a produce with acks=0), [`Reply::Close`] when Kafka closes the
    /// connection instead (an acks=0 produce that was denied). `sequencing` is dropped when
    /// the request is sequenced: a produce's once its batches are queued in their
    /// partitions' writers, any other request's once it is answered (see
    /// [`sequencing`](crate::broker::sequencing)).
    pub async fn handle(
        &self,
        request: DecodedRequest,
        access: &Access,
        sequencing: SequencingHold,
    ) -> Reply {
        let DecodedRequest {
            header,
            version,
            body,
            ..
        } = request;
        let client_id = header.client_id.as_deref().unwrap_or_default();
        let broker = &*self.broker;
        // Only the answers that name nodes read the registrations.
        let names_nodes = matches!(
            body,
            KafkaRequest::Metadata(_)
                | KafkaRequest::DescribeCluster(_)
                | KafkaRequest::DescribeTopicPartitions(_)
                | KafkaRequest::FindCoordinator(_)
        );
        let registered = if names_nodes {
            broker.registered_kafka_listeners()
        } else {
            BTreeMap::new()
        };
        let addresses = NodeAddresses {
            own: &self.advertised,
            kind: self.kind,
            registered: &registered,
        };
        // One exhaustive match: a row added to the table without an arm does not compile.
        // Every arm but Produce leaves `sequencing` here, dropped once the answer is made.
        Reply::Answer(match body {
            KafkaRequest::ApiVersions(_) => {
                KafkaResponse::ApiVersions(handlers::cluster::api_versions())
            }
            KafkaRequest::Metadata(request) => KafkaResponse::Metadata(
                handlers::cluster::metadata(
                    broker,
                    access,
                    &addresses,
                    request,
                    version,
                    self.settings
                        .auto_create_topics
                        .then_some(self.settings.auto_create_topic_partitions),
                )
                .await,
            ),
            KafkaRequest::DescribeCluster(request) => KafkaResponse::DescribeCluster(
                handlers::cluster::describe_cluster(broker, access, &addresses, request).await,
            ),
            KafkaRequest::DescribeTopicPartitions(request) => {
                KafkaResponse::DescribeTopicPartitions(
                    handlers::cluster::describe_topic_partitions(
                        broker, access, &addresses, request,
                    )
                    .await,
                )
            }
            KafkaRequest::Produce(request) => {
                match handlers::produce::produce(broker, access, request, version, sequencing).await
                {
                    handlers::produce::Produced::Answered(response) => {
                        KafkaResponse::Produce(response)
                    }
                    handlers::produce::Produced::Unanswered => return Reply::Nothing,
                    handlers::produce::Produced::Close => return Reply::Close,
                }
            }
            KafkaRequest::Fetch(request) => KafkaResponse::Fetch(
                handlers::fetch::fetch(broker, access, &self.fetch_sessions, request, version)
                    .await,
            ),
            KafkaRequest::ListOffsets(request) => KafkaResponse::ListOffsets(
                authorize::list_offsets(broker, access, request, version).await,
            ),
            KafkaRequest::InitProducerId(request) => KafkaResponse::InitProducerId(
                handlers::produce::init_producer_id(broker, access, request).await,
            ),
            KafkaRequest::CreateTopics(request) => KafkaResponse::CreateTopics(
                handlers::topics::create_topics(broker, access, request, version).await,
            ),
            KafkaRequest::CreatePartitions(request) => KafkaResponse::CreatePartitions(
                authorize::create_partitions(broker, access, request).await,
            ),
            KafkaRequest::DeleteTopics(request) => KafkaResponse::DeleteTopics(
                handlers::topics::delete_topics(broker, access, request).await,
            ),
            KafkaRequest::DescribeConfigs(request) => KafkaResponse::DescribeConfigs(
                authorize::describe_configs(broker, access, request).await,
            ),
            KafkaRequest::AlterConfigs(request) => {
                KafkaResponse::AlterConfigs(authorize::alter_configs(broker, access, request).await)
            }
            KafkaRequest::IncrementalAlterConfigs(request) => {
                KafkaResponse::IncrementalAlterConfigs(
                    authorize::incremental_alter_configs(broker, access, request).await,
                )
            }
            KafkaRequest::OffsetForLeaderEpoch(request) => KafkaResponse::OffsetForLeaderEpoch(
                authorize::offset_for_leader_epoch(broker, access, request).await,
            ),
            KafkaRequest::DeleteRecords(request) => KafkaResponse::DeleteRecords(
                authorize::delete_records(broker, access, request).await,
            ),
            KafkaRequest::DescribeProducers(request) => KafkaResponse::DescribeProducers(
                handlers::producers::describe_producers(broker, access, request).await,
            ),
            // Groups (kafka/groups.rs): one arm per API.
            KafkaRequest::FindCoordinator(request) => KafkaResponse::FindCoordinator(
                groups::find_coordinator(broker, access, &addresses, request, version).await,
            ),
            KafkaRequest::JoinGroup(request) => KafkaResponse::JoinGroup(
                groups::join_group(broker, access, client_id, "", request, version).await,
            ),
            KafkaRequest::SyncGroup(request) => {
                KafkaResponse::SyncGroup(groups::sync_group(broker, access, request, version).await)
            }
            KafkaRequest::Heartbeat(request) => {
                KafkaResponse::Heartbeat(groups::heartbeat(broker, access, request).await)
            }
            KafkaRequest::LeaveGroup(request) => KafkaResponse::LeaveGroup(
                groups::leave_group(broker, access, request, version).await,
            ),
            KafkaRequest::OffsetCommit(request) => {
                KafkaResponse::OffsetCommit(authorize::offset_commit(broker, access, request).await)
            }
            KafkaRequest::OffsetFetch(request) => KafkaResponse::OffsetFetch(
                groups::offset_fetch(broker, access, request, version).await,
            ),
            KafkaRequest::OffsetDelete(request) => {
                KafkaResponse::OffsetDelete(authorize::offset_delete(broker, access, request).await)
            }
            KafkaRequest::ListGroups(request) => {
                KafkaResponse::ListGroups(groups::list_groups(broker, access, request).await)
            }
            KafkaRequest::DescribeGroups(request) => KafkaResponse::DescribeGroups(
                groups::describe_groups(broker, access, request, version).await,
            ),
            KafkaRequest::DeleteGroups(request) => {
                KafkaResponse::DeleteGroups(authorize::delete_groups(broker, access, request).await)
            }
            // KIP-848 groups (kafka/consumer_groups.rs).
            KafkaRequest::ConsumerGroupHeartbeat(request) => KafkaResponse::ConsumerGroupHeartbeat(
                consumer_groups::consumer_group_heartbeat(
                    broker, access, client_id, request, version,
                )
                .await,
            ),
            KafkaRequest::ConsumerGroupDescribe(request) => KafkaResponse::ConsumerGroupDescribe(
                consumer_groups::consumer_group_describe(broker, access, request, version).await,
            ),
            // SASL outside an exchange (kafka/sasl.rs decides which reach here): as Kafka's
            // KafkaApis, ILLEGAL_SASL_STATE.
            KafkaRequest::SaslHandshake(_) => {
                KafkaResponse::SaslHandshake(sasl::handshake_outside_exchange())
            }
            KafkaRequest::SaslAuthenticate(_) => {
                KafkaResponse::SaslAuthenticate(sasl::authenticate_outside_exchange())
            }
            // SCRAM users and ACLs (handlers/security.rs).
            KafkaRequest::DescribeAcls(request) => KafkaResponse::DescribeAcls(
                handlers::security::describe_acls(broker, access, request).await,
            ),
            KafkaRequest::CreateAcls(request) => KafkaResponse::CreateAcls(
                handlers::security::create_acls(broker, access, request).await,
            ),
            KafkaRequest::DeleteAcls(request) => KafkaResponse::DeleteAcls(
                handlers::security::delete_acls(broker, access, request).await,
            ),
            KafkaRequest::DescribeUserScramCredentials(request) => {
                KafkaResponse::DescribeUserScramCredentials(
                    handlers::security::describe_user_scram_credentials(broker, access, request)
                        .await,
                )
            }
            // Client quotas (handlers/quotas.rs).
            KafkaRequest::DescribeClientQuotas(request) => KafkaResponse::DescribeClientQuotas(
                handlers::quotas::describe_client_quotas(broker, access, &request),
            ),
            KafkaRequest::AlterClientQuotas(request) => KafkaResponse::AlterClientQuotas(
                handlers::quotas::alter_client_quotas(broker, access, request).await,
            ),
            KafkaRequest::AlterUserScramCredentials(request) => {
                KafkaResponse::AlterUserScramCredentials(
                    handlers::security::alter_user_scram_credentials(broker, access, request).await,
                )
            }
        })
    }
}

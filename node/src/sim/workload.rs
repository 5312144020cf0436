//! Simulated clients: seeded state machines that send requests and read answers as real
//! clients do, and tell the [`Ledger`] what the node promised them.
//!
//! Each client has at most one request outstanding (an idempotent producer with one batch
//! in flight per partition, as `max.in.flight=1`). A request that gets no answer within
//! [`REQUEST_TIMEOUT_MS`], or whose connection is reset, is retried as a real client
//! would: a producer resends the same batch with the same sequence, so a lost answer
//! becomes a duplicate request the node must recognise.
//!
//! Roles: producers (idempotent or not; `acks` 0, 1 or all; any codec), consumers (fetch
//! at positions), members of one consumer group (join, heartbeat, leave, commit, read
//! commits), and one admin (create and delete topics, alter and describe configs). Topic
//! names are never reused, so "a deleted topic never comes back" is checkable.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{Compression, EncodeOptions, Record, encode_batch};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::sim::checkers::{IDEMPOTENT_PREFIX, Ledger, decode_records};
use crate::sim::net::{ConnectionId, NodeId};

/// How long a client waits for an answer before it retries, in simulated milliseconds.
/// Far longer than the network's worst delay, so a copy of a request that timed out is
/// handled long before the client's next request is sent.
pub const REQUEST_TIMEOUT_MS: u64 = 3_000;

/// The topic the consumer group subscribes to; created at the start, never deleted.
pub const GROUP_TOPIC: &str = "group-topic";

/// Partitions of [`GROUP_TOPIC`].
pub const GROUP_TOPIC_PARTITIONS: u32 = 4;

/// The one consumer group.
pub const GROUP: &str = "sim-group";

/// The name of the transform the admin deploys; its output topic is `<input>.copy`.
pub const TRANSFORM_NAME: &str = "copy";

/// Least time between two group commits, in simulated milliseconds: more than twice the
/// network's worst delay.
const COMMIT_SPACING_MS: u64 = 200;

/// Session timeout the members ask for, in milliseconds.
pub const SESSION_TIMEOUT_MS: u32 = 3_000;

/// A topic the workload may use, with when its creation was acknowledged.
#[derive(Clone, Debug)]
pub struct LiveTopic {
    /// Partition count.
    pub partitions: u32,
    /// Simulated millisecond of the acknowledgement.
    pub created_at_ms: u64,
}

/// What a request was for, so its answer can be judged.
#[derive(Clone, Debug)]
pub enum Purpose {
    /// InitProducerId of an idempotent producer.
    InitProducer,
    /// A produce of `values` to one partition.
    Produce {
        /// Topic and partition.
        key: (String, u32),
        /// The records' values.
        values: Vec<Bytes>,
        /// `acks`.
        acks: Acks,
    },
    /// A fetch at a position.
    Fetch {
        /// Topic and partition.
        key: (String, u32),
    },
    /// A group heartbeat (join, stay or leave).
    Heartbeat {
        /// Whether it leaves the group.
        leaving: bool,
    },
    /// A commit of one offset.
    Commit {
        /// Topic and partition.
        key: (String, u32),
        /// The offset.
        offset: i64,
    },
    /// An offset fetch of the group's topic.
    OffsetFetch,
    /// CreateTopics of one topic.
    CreateTopic {
        /// Name.
        name: String,
        /// Partition count.
        partitions: u32,
    },
    /// DeleteTopics of one topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// DeployTransform of the filter module on a topic.
    DeployTransform {
        /// The input topic.
        input: String,
    },
    /// AlterConfigs of one key.
    AlterConfig {
        /// Topic.
        topic: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
}

/// A request waiting for its answer.
#[derive(Clone, Debug)]
pub struct Outstanding {
    /// The request's id.
    pub request_id: u64,
    /// The request, resent as it is on a retry.
    pub request: Request,
    /// What it is for.
    pub purpose: Purpose,
    /// When this attempt was sent.
    pub sent_ms: u64,
    /// When the client gives up waiting.
    pub deadline_ms: u64,
}

#[derive(Debug)]
enum Role {
    Producer {
        idempotent: bool,
        producer: Option<(i64, i16)>,
        sequences: BTreeMap<(String, u32), i32>,
        batches: u64,
    },
    Consumer {
        positions: BTreeMap<(String, u32), i64>,
    },
    Member {
        member_id: String,
        epoch: i32,
        joined: bool,
        assignment: Vec<TopicPartitions>,
        next_heartbeat_ms: u64,
    },
    Admin {
        topics_created: u64,
        /// A filter module to deploy as a topic transform, until it is deployed.
        transform_module: Option<Bytes>,
    },
}

/// One simulated client.
#[derive(Debug)]
pub struct Client {
    id: u32,
    node: NodeId,
    connection: ConnectionId,
    role: Role,
    outstanding: Option<Outstanding>,
    next_request_id: u64,
    /// Answers this client received that were not what it expected (for the summary).
    unexpected_errors: u64,
}

/// A request a client wants on the network.
#[derive(Debug)]
pub struct Send {
    /// The sending client.
    pub client: u32,
    /// To which node.
    pub node: NodeId,
    /// On which connection.
    pub connection: ConnectionId,
    /// The request's id.
    pub request_id: u64,
    /// The request.
    pub request: Request,
}

/// Counts for the run summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkloadStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Retries after a timeout or a reset.
    pub retries: u64,
    /// Records acknowledged.
    pub records_acknowledged: u64,
    /// Records read by consumers.
    pub records_read: u64,
    /// Answers with an error the client did not expect.
    pub unexpected_errors: u64,
}

/// All clients and the workload's shared view of topics.
pub struct Workload {
    clients: Vec<Client>,
    topics: BTreeMap<String, LiveTopic>,
    /// Whether a group commit is outstanding: commits are serialized so that acknowledged
    /// commit offsets only grow.
    commit_in_flight: bool,
    /// When the last commit was sent: the next waits [`COMMIT_SPACING_MS`], so a network
    /// duplicate of a commit cannot land after the next one and move the offset back (which
    /// a duplicate would do on a real network too; the checker's rule needs an order).
    last_commit_sent_ms: u64,
    next_commit: BTreeMap<(String, u32), i64>,
    /// Topics read by a transform: never deleted (the node refuses it while the transform
    /// runs).
    transform_inputs: BTreeSet<String>,
    /// Every produce sent with acks, by (client, request id): an answer to an attempt the
    /// client gave up on (or to a duplicate) still binds the node.
    produces_sent: BTreeMap<(u32, u64), Purpose>,
    stats: WorkloadStats,
}

impl Workload {
    /// Seeded clients, all talking to `node`: 1-3 producers, 1-2 consumers, 0-3 group
    /// members, one admin.
    /// With `transform_module`, the admin deploys it once as a transform of a topic.
    pub fn new(rng: &mut ChaCha8Rng, node: NodeId, transform_module: Option<Bytes>) -> Self {
        let mut roles = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            roles.push(Role::Producer {
                idempotent: rng.random_bool(0.6),
                producer: None,
                sequences: BTreeMap::new(),
                batches: 0,
            });
        }
        for _ in 0..rng.random_range(1..=2) {
            roles.push(Role::Consumer {
                positions: BTreeMap::new(),
            });
        }
        for _ in 0..rng.random_range(0..=3) {
            roles.push(Role::Member {
                member_id: String::new(),
                epoch: 0,
                joined: false,
                assignment: Vec::new(),
                next_heartbeat_ms: 0,
            });
        }
        roles.push(Role::Admin {
            topics_created: 0,
            transform_module,
        });
        let clients = roles
            .into_iter()
            .enumerate()
            .map(|(index, role)| Client {
                id: index as u32,
                node,
                connection: 0,
                role,
                outstanding: None,
                next_request_id: 1,
                unexpected_errors: 0,
            })
            .collect();
        Self {
            clients,
            topics: BTreeMap::new(),
            commit_in_flight: false,
            last_commit_sent_ms: 0,
            next_commit: BTreeMap::new(),
            produces_sent: BTreeMap::new(),
            transform_inputs: BTreeSet::new(),
            stats: WorkloadStats::default(),
        }
    }

    /// A topic created outside the workload (the group's topic, at the start).
    pub fn add_topic(&mut self, name: &str, partitions: u32, now_ms: u64) {
        self.topics.insert(
            name.to_string(),
            LiveTopic {
                partitions,
                created_at_ms: now_ms,
            },
        );
    }

    /// Counts for the summary.
    pub fn stats(&self) -> WorkloadStats {
        let mut stats = self.stats;
        stats.unexpected_errors = self.clients.iter().map(|c| c.unexpected_errors).sum();
        stats
    }

    /// Number of clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Gives every client its first connection (from the network).
    pub fn connect_all(&mut self, mut connect: impl FnMut() -> ConnectionId) {
        for client in &mut self.clients {
            client.connection = connect();
        }
    }

    /// A client's connection was reset: its outstanding request is failed and resent on a
    /// new connection at its next turn.
    pub fn connection_reset(&mut self, client: u32, connection: ConnectionId) {
        if let Some(client) = self.clients.get_mut(client as usize) {
            client.connection = connection;
            if let Some(outstanding) = &mut client.outstanding {
                outstanding.deadline_ms = 0;
            }
        }
    }

    /// The connection a client uses now.
    pub fn connection_of(&self, client: u32) -> Option<ConnectionId> {
        self.clients.get(client as usize).map(|c| c.connection)
    }

    /// Each client acts: retries a request that timed out, or (with some chance) sends a
    /// new one. `settling` limits the workload to group heartbeats, so the group can settle.
    pub fn tick(
        &mut self,
        rng: &mut ChaCha8Rng,
        now_ms: u64,
        ledger: &mut Ledger,
        settling: bool,
    ) -> Vec<Send> {
        let mut sends = Vec::new();
        for index in 0..self.clients.len() {
            let expired = self.clients[index]
                .outstanding
                .as_ref()
                .is_some_and(|outstanding| outstanding.deadline_ms <= now_ms);
            if expired {
                let client = &mut self.clients[index];
                let Some(mut outstanding) = client.outstanding.take() else {
                    continue;
                };
                // Retry with the same request; a new id, as a new stream would have.
                if matches!(outstanding.purpose, Purpose::Commit { .. }) {
                    // An unanswered commit is given up; a later one supersedes it.
                    self.commit_in_flight = false;
                    continue;
                }
                if settling && !matches!(outstanding.purpose, Purpose::Heartbeat { .. }) {
                    continue;
                }
                outstanding.request_id = client.next_request_id;
                client.next_request_id += 1;
                outstanding.deadline_ms = now_ms + REQUEST_TIMEOUT_MS;
                outstanding.sent_ms = now_ms;
                self.stats.retries += 1;
                self.stats.requests += 1;
                if matches!(outstanding.purpose, Purpose::Produce { .. }) {
                    self.produces_sent.insert(
                        (client.id, outstanding.request_id),
                        outstanding.purpose.clone(),
                    );
                }
                sends.push(Send {
                    client: client.id,
                    node: client.node,
                    connection: client.connection,
                    request_id: outstanding.request_id,
                    request: outstanding.request.clone(),
                });
                client.outstanding = Some(outstanding);
                continue;
            }
            if self.clients[index].outstanding.is_some() {
                continue;
            }
            let is_member = matches!(self.clients[index].role, Role::Member { .. });
            if settling && !is_member {
                continue;
            }
            // Members act on their heartbeat schedule; others at a seeded rate.
            if !is_member && !rng.random_bool(0.05) {
                continue;
            }
            if let Some((request, purpose)) =
                self.next_request(index, rng, now_ms, ledger, settling)
            {
                let client = &mut self.clients[index];
                let request_id = client.next_request_id;
                client.next_request_id += 1;
                self.stats.requests += 1;
                sends.push(Send {
                    client: client.id,
                    node: client.node,
                    connection: client.connection,
                    request_id,
                    request: request.clone(),
                });
                let fire_and_forget = matches!(
                    purpose,
                    Purpose::Produce {
                        acks: Acks::None,
                        ..
                    }
                );
                if matches!(purpose, Purpose::Produce { .. }) && !fire_and_forget {
                    self.produces_sent
                        .insert((client.id, request_id), purpose.clone());
                }
                if !fire_and_forget {
                    client.outstanding = Some(Outstanding {
                        request_id,
                        request,
                        purpose,
                        sent_ms: now_ms,
                        deadline_ms: now_ms + REQUEST_TIMEOUT_MS,
                    });
                }
            }
        }
        sends
    }

    fn next_request(
        &mut self,
        index: usize,
        rng: &mut ChaCha8Rng,
        now_ms: u64,
        ledger: &mut Ledger,
        settling: bool,
    ) -> Option<(Request, Purpose)> {
        let topics: Vec<(String, LiveTopic)> = self
            .topics
            .iter()
            .map(|(name, topic)| (name.clone(), topic.clone()))
            .collect();
        let commit_in_flight =
            self.commit_in_flight || now_ms < self.last_commit_sent_ms + COMMIT_SPACING_MS;
        let client_id = self.clients[index].id;
        let role = &mut self.clients[index].role;
        match role {
            Role::Producer {
                idempotent,
                producer,
                sequences,
                batches,
            } => {
                if *idempotent && producer.is_none() {
                    return Some((
                        Request::InitProducerId(InitProducerIdRequest::default()),
                        Purpose::InitProducer,
                    ));
                }
                let (name, topic) = pick(rng, &topics)?;
                let key = (name.clone(), rng.random_range(0..topic.partitions));
                let count = rng.random_range(1..=4);
                *batches += 1;
                let values: Vec<Bytes> = (0..count)
                    .map(|index| {
                        let prefix: &[u8] = if *idempotent {
                            IDEMPOTENT_PREFIX
                        } else {
                            b"plain-"
                        };
                        let mut value = prefix.to_vec();
                        value.extend_from_slice(
                            format!("c{client_id}-b{batches}-r{index}").as_bytes(),
                        );
                        Bytes::from(value)
                    })
                    .collect();
                let records: Vec<Record> = values
                    .iter()
                    .map(|value| Record {
                        timestamp: 1_700_000_000_000 + now_ms as i64,
                        key: Some(Bytes::from(format!("k{}", rng.random_range(0..8)))),
                        value: Some(value.clone()),
                        headers: Vec::new(),
                    })
                    .collect();
                let compression = *[
                    Compression::None,
                    Compression::None,
                    Compression::Lz4,
                    Compression::Zstd,
                ]
                .get(rng.random_range(0..4))
                .unwrap_or(&Compression::None);
                let mut options = EncodeOptions {
                    compression,
                    ..EncodeOptions::default()
                };
                if let Some((id, epoch)) = *producer {
                    let sequence = sequences.entry(key.clone()).or_insert(0);
                    options.producer_id = id;
                    options.producer_epoch = epoch;
                    options.base_sequence = *sequence;
                    // The sequence moves on when the batch is sent; a retry resends the
                    // same bytes (same sequence).
                    *sequence += count;
                }
                let batch = encode_batch(&records, &options).ok()?;
                ledger.values_sent(&values);
                let acks = match rng.random_range(0..10) {
                    0 => Acks::None,
                    1..=3 => Acks::Leader,
                    _ => Acks::All,
                };
                Some((
                    Request::Produce(ProduceRequest {
                        acks,
                        timeout_ms: 2_000,
                        topics: vec![ProduceTopic {
                            name: key.0.clone(),
                            partitions: vec![ProducePartition {
                                current_leader_epoch: None,
                                partition: key.1,
                                records: batch,
                            }],
                        }],
                    }),
                    Purpose::Produce { key, values, acks },
                ))
            }
            Role::Consumer { positions } => {
                let (name, topic) = pick(rng, &topics)?;
                let key = (name.clone(), rng.random_range(0..topic.partitions));
                let position = positions.entry(key.clone()).or_insert(0);
                if rng.random_bool(0.05) {
                    // Rewind: reads the same offsets again (they must agree).
                    *position = rng.random_range(0..=*position);
                }
                Some((
                    Request::Fetch(FetchRequest {
                        max_wait_ms: rng.random_range(0..200),
                        min_bytes: 1,
                        max_bytes: 64 * 1024,
                        topics: vec![FetchTopic {
                            name: key.0.clone(),
                            partitions: vec![FetchPartition {
                                current_leader_epoch: None,
                                partition: key.1,
                                fetch_offset: *position,
                                partition_max_bytes: 64 * 1024,
                            }],
                        }],
                        plugin: None,
                    }),
                    Purpose::Fetch { key },
                ))
            }
            Role::Member {
                member_id,
                epoch,
                joined,
                assignment,
                next_heartbeat_ms,
            } => {
                let heartbeat = |member_id: &str, epoch: i32, owned: Vec<TopicPartitions>| {
                    Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
                        group_id: GROUP.into(),
                        member_id: member_id.to_string(),
                        member_epoch: epoch,
                        instance_id: None,
                        rebalance_timeout_ms: 5_000,
                        session_timeout_ms: SESSION_TIMEOUT_MS,
                        subscribed_topics: vec![GROUP_TOPIC.into()],
                        subscribed_pattern: None,
                        assignor: "uniform".into(),
                        owned_partitions: owned,
                    })
                };
                if !*joined {
                    if !settling && !rng.random_bool(0.01) {
                        return None;
                    }
                    return Some((
                        heartbeat("", 0, Vec::new()),
                        Purpose::Heartbeat { leaving: false },
                    ));
                }
                if !settling && rng.random_bool(0.0005) {
                    return Some((
                        heartbeat(member_id, -1, Vec::new()),
                        Purpose::Heartbeat { leaving: true },
                    ));
                }
                let owned: Vec<(String, u32)> = assignment
                    .iter()
                    .flat_map(|topic| topic.partitions.iter().map(|p| (topic.topic.clone(), *p)))
                    .collect();
                if !settling && !commit_in_flight && !owned.is_empty() && rng.random_bool(0.01) {
                    let key = owned.get(rng.random_range(0..owned.len()))?.clone();
                    let next = self.next_commit.entry(key.clone()).or_insert(0);
                    *next += rng.random_range(1..=10);
                    let offset = *next;
                    self.commit_in_flight = true;
                    self.last_commit_sent_ms = now_ms;
                    return Some((
                        Request::OffsetCommit(OffsetCommitRequest {
                            group_id: GROUP.into(),
                            member_id: member_id.clone(),
                            member_epoch: *epoch,
                            topics: vec![OffsetCommitTopic {
                                name: key.0.clone(),
                                partitions: vec![OffsetCommitPartition {
                                    partition: key.1,
                                    offset,
                                    metadata: String::new(),
                                }],
                            }],
                        }),
                        Purpose::Commit { key, offset },
                    ));
                }
                if !settling && rng.random_bool(0.005) {
                    return Some((
                        Request::OffsetFetch(OffsetFetchRequest {
                            group_id: GROUP.into(),
                            topics: None,
                        }),
                        Purpose::OffsetFetch,
                    ));
                }
                if now_ms < *next_heartbeat_ms {
                    return None;
                }
                Some((
                    heartbeat(member_id, *epoch, assignment.clone()),
                    Purpose::Heartbeat { leaving: false },
                ))
            }
            Role::Admin {
                topics_created,
                transform_module,
            } => {
                let choice = rng.random_range(0..10);
                let transform_inputs = &self.transform_inputs;
                let deletable: Vec<(String, LiveTopic)> = topics
                    .iter()
                    .filter(|(name, topic)| {
                        name != GROUP_TOPIC
                            && !transform_inputs.contains(name)
                            && now_ms >= topic.created_at_ms + 1_000
                    })
                    .cloned()
                    .collect();
                if let Some(module) = transform_module.clone()
                    && choice == 9
                    && let Some((input, _)) = pick(rng, &deletable)
                {
                    let input = input.clone();
                    self.transform_inputs.insert(input.clone());
                    return Some((
                        Request::DeployTransform(DeployTransformRequest {
                            name: TRANSFORM_NAME.into(),
                            kind: ledge_protocol::PluginKind::Filter,
                            module,
                            input: input.clone(),
                            output: String::new(),
                            params: Vec::new(),
                            on_error: ledge_protocol::OnError::DeadLetter,
                            dead_letter_topic: String::new(),
                            window: None,
                        }),
                        Purpose::DeployTransform { input },
                    ));
                }
                if choice < 4 || topics.len() < 2 {
                    *topics_created += 1;
                    let name = format!("topic-{topics_created}");
                    let partitions = rng.random_range(1..=3);
                    let mut configs = Vec::new();
                    if rng.random_bool(0.5) {
                        // Small segments: rolls happen within a short run.
                        configs.push(ConfigEntry {
                            name: "segment.bytes".into(),
                            value: rng.random_range(1024..8192).to_string(),
                        });
                    }
                    return Some((
                        Request::CreateTopics(CreateTopicsRequest {
                            topics: vec![CreatableTopic {
                                replication_factor: None,
                                name: name.clone(),
                                partitions,
                                configs,
                            }],
                            validate_only: false,
                        }),
                        Purpose::CreateTopic { name, partitions },
                    ));
                }
                if choice < 6 {
                    let (name, _) = pick(rng, &deletable)?;
                    let name = name.clone();
                    ledger.topic_deletion_sent(&name);
                    self.topics.remove(&name);
                    return Some((
                        Request::DeleteTopics(DeleteTopicsRequest {
                            names: vec![name.clone()],
                        }),
                        Purpose::DeleteTopic { name },
                    ));
                }
                let (name, _) = pick(rng, &topics)?;
                let name = name.clone();
                let (key, value) = if rng.random_bool(0.5) {
                    ("segment.bytes", rng.random_range(1024..65536).to_string())
                } else {
                    (
                        "max.message.bytes",
                        rng.random_range(100_000..2_000_000).to_string(),
                    )
                };
                ledger.config_alter_sent(&name, key);
                Some((
                    Request::AlterConfigs(AlterConfigsRequest {
                        topics: vec![AlterTopicConfigs {
                            name: name.clone(),
                            set: vec![ConfigEntry {
                                name: key.into(),
                                value: value.clone(),
                            }],
                            delete: Vec::new(),
                        }],
                        validate_only: false,
                    }),
                    Purpose::AlterConfig {
                        topic: name,
                        key: key.into(),
                        value,
                    },
                ))
            }
        }
    }

    /// An answer reached a client: the client moves on and the ledger learns what was
    /// promised. `incarnation` is the node incarnation that answered.
    pub fn answer(
        &mut self,
        client: u32,
        request_id: u64,
        response: &Response,
        incarnation: u64,
        now_ms: u64,
        ledger: &mut Ledger,
    ) -> Result<(), String> {
        let Some(client) = self.clients.get_mut(client as usize) else {
            return Ok(());
        };
        let Some(outstanding) = client
            .outstanding
            .take_if(|outstanding| outstanding.request_id == request_id)
        else {
            // An answer to an attempt the client gave up on, or a duplicate's answer. A
            // produce acknowledgement still binds the node; anything else is ignored.
            if let Some(purpose) = self.produces_sent.get(&(client.id, request_id)) {
                if let Purpose::Produce { values, .. } = purpose
                    && matches!(response, Response::Produce(answer) if answer.topics.first().and_then(|t| t.partitions.first()).is_some_and(|p| p.error == ErrorCode::None))
                {
                    self.stats.records_acknowledged += values.len() as u64;
                }
                Self::stray_produce_answer(purpose, response, incarnation, ledger)?;
            }
            return Ok(());
        };
        match (&outstanding.purpose, response) {
            (Purpose::InitProducer, Response::InitProducerId(answer)) => {
                if let Role::Producer {
                    producer,
                    sequences,
                    ..
                } = &mut client.role
                    && answer.error == ErrorCode::None
                {
                    *producer = Some((answer.producer_id, answer.producer_epoch));
                    sequences.clear();
                }
            }
            (Purpose::Produce { key, values, acks }, Response::Produce(answer)) => {
                let Some(partition) = answer
                    .topics
                    .first()
                    .and_then(|topic| topic.partitions.first())
                else {
                    client.unexpected_errors += 1;
                    return Ok(());
                };
                match partition.error {
                    ErrorCode::None => {
                        self.stats.records_acknowledged += values.len() as u64;
                        ledger.produce_acknowledged(
                            key,
                            partition.base_offset,
                            values,
                            *acks == Acks::All,
                            incarnation,
                        )?;
                    }
                    ErrorCode::OutOfOrderSequenceNumber
                    | ErrorCode::UnknownProducerId
                    | ErrorCode::InvalidProducerEpoch => {
                        // The node lost (or never had) this producer's earlier batches: a
                        // real client starts over with a new id, and never resends this
                        // batch under it (that could duplicate it).
                        if let Role::Producer { producer, .. } = &mut client.role {
                            *producer = None;
                        }
                    }
                    ErrorCode::UnknownTopicOrPartition => {}
                    code if code.is_retriable() => {
                        let mut retry = outstanding.clone();
                        retry.deadline_ms = now_ms + 50;
                        client.outstanding = Some(retry);
                    }
                    _ => client.unexpected_errors += 1,
                }
            }
            (Purpose::Fetch { key }, Response::Fetch(answer)) => {
                let Some(partition) = answer
                    .topics
                    .first()
                    .and_then(|topic| topic.partitions.first())
                else {
                    return Ok(());
                };
                let Role::Consumer { positions } = &mut client.role else {
                    return Ok(());
                };
                match partition.error {
                    ErrorCode::None => {
                        let records = decode_records(&partition.records)
                            .map_err(|error| format!("{}/{}: {error}", key.0, key.1))?;
                        let position = positions.entry(key.clone()).or_insert(0);
                        for (offset, value) in records {
                            if offset < *position {
                                continue;
                            }
                            ledger.record_read(key, offset, &value, incarnation)?;
                            self.stats.records_read += 1;
                            *position = offset + 1;
                        }
                    }
                    ErrorCode::OffsetOutOfRange => {
                        positions.insert(key.clone(), partition.log_start_offset.max(0));
                    }
                    _ => {}
                }
            }
            (Purpose::Heartbeat { leaving }, Response::ConsumerGroupHeartbeat(answer)) => {
                if let Role::Member {
                    member_id,
                    epoch,
                    joined,
                    assignment,
                    next_heartbeat_ms,
                } = &mut client.role
                {
                    match answer.error {
                        ErrorCode::None if !leaving => {
                            *member_id = answer.member_id.clone();
                            *epoch = answer.member_epoch;
                            *joined = true;
                            *assignment = answer.assignment.clone();
                            *next_heartbeat_ms =
                                now_ms + u64::from(answer.heartbeat_interval_ms.max(10));
                        }
                        ErrorCode::None
                        | ErrorCode::UnknownMemberId
                        | ErrorCode::FencedMemberEpoch => {
                            *member_id = String::new();
                            *epoch = 0;
                            *joined = false;
                            assignment.clear();
                        }
                        _ => {
                            *next_heartbeat_ms = now_ms + 100;
                        }
                    }
                }
            }
            (Purpose::Commit { key, offset }, Response::OffsetCommit(answer)) => {
                self.commit_in_flight = false;
                let accepted = answer.error == ErrorCode::None
                    && answer
                        .topics
                        .iter()
                        .flat_map(|topic| &topic.partitions)
                        .all(|partition| partition.error == ErrorCode::None);
                if accepted {
                    ledger.commit_acknowledged(
                        (GROUP.into(), key.0.clone(), key.1),
                        *offset,
                        now_ms,
                    );
                }
            }
            (Purpose::OffsetFetch, Response::OffsetFetch(answer)) => {
                if answer.error == ErrorCode::None {
                    for topic in &answer.topics {
                        for partition in &topic.partitions {
                            ledger.commit_read(
                                (GROUP.into(), topic.name.clone(), partition.partition),
                                partition.offset,
                                incarnation,
                                outstanding.sent_ms,
                                now_ms,
                            )?;
                        }
                    }
                }
            }
            (Purpose::CreateTopic { name, partitions }, Response::CreateTopics(answer)) => {
                let code = answer.topics.first().map(|topic| topic.error);
                if matches!(code, Some(ErrorCode::None | ErrorCode::TopicAlreadyExists)) {
                    ledger.topic_created(name, *partitions);
                    self.topics.insert(
                        name.clone(),
                        LiveTopic {
                            partitions: *partitions,
                            created_at_ms: now_ms,
                        },
                    );
                } else if code.is_some_and(ErrorCode::is_retriable) {
                    let mut retry = outstanding.clone();
                    retry.deadline_ms = now_ms + 50;
                    client.outstanding = Some(retry);
                }
            }
            (Purpose::DeleteTopic { name }, Response::DeleteTopics(answer)) => {
                let code = answer.topics.first().map(|topic| topic.error);
                if matches!(
                    code,
                    Some(ErrorCode::None | ErrorCode::UnknownTopicOrPartition)
                ) {
                    ledger.topic_deleted(name);
                } else if code.is_some_and(ErrorCode::is_retriable) {
                    let mut retry = outstanding.clone();
                    retry.deadline_ms = now_ms + 50;
                    client.outstanding = Some(retry);
                }
            }
            (Purpose::DeployTransform { input }, Response::DeployTransform(answer)) => {
                if answer.error == ErrorCode::None {
                    if let Role::Admin {
                        transform_module, ..
                    } = &mut client.role
                    {
                        *transform_module = None;
                    }
                    ledger.transform_deployed(input);
                } else if answer.error.is_retriable() {
                    let mut retry = outstanding.clone();
                    retry.deadline_ms = now_ms + 50;
                    client.outstanding = Some(retry);
                } else {
                    // Refused (the topic went away meanwhile): another topic next time.
                    self.transform_inputs.remove(input);
                }
            }
            (Purpose::AlterConfig { topic, key, value }, Response::AlterConfigs(answer)) => {
                if answer.topics.first().map(|topic| topic.error) == Some(ErrorCode::None) {
                    ledger.config_altered(topic, key, value);
                }
            }
            (purpose, response) => {
                return Err(format!(
                    "the answer to {purpose:?} is a {:?} answer",
                    response.api_key()
                ));
            }
        }
        Ok(())
    }

    /// Late produce answers (to attempts a client gave up on) still bind the node.
    fn stray_produce_answer(
        purpose: &Purpose,
        response: &Response,
        incarnation: u64,
        ledger: &mut Ledger,
    ) -> Result<(), String> {
        if let (Purpose::Produce { key, values, acks }, Response::Produce(answer)) =
            (purpose, response)
            && let Some(partition) = answer.topics.first().and_then(|t| t.partitions.first())
            && partition.error == ErrorCode::None
        {
            ledger.produce_acknowledged(
                key,
                partition.base_offset,
                values,
                *acks == Acks::All,
                incarnation,
            )?;
        }
        Ok(())
    }

    /// The assignments of the members in the group now, by member id.
    pub fn group_assignments(&self) -> BTreeMap<String, Vec<TopicPartitions>> {
        self.clients
            .iter()
            .filter_map(|client| match &client.role {
                Role::Member {
                    member_id,
                    joined: true,
                    assignment,
                    ..
                } => Some((member_id.clone(), assignment.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether any member is in (or joining) the group.
    pub fn has_members(&self) -> bool {
        self.clients
            .iter()
            .any(|client| matches!(client.role, Role::Member { .. }))
    }

    /// The requests outstanding now (the simulator keeps their purposes to judge late
    /// answers).
    pub fn outstanding(&self) -> impl Iterator<Item = (u32, &Outstanding)> {
        self.clients
            .iter()
            .filter_map(|client| client.outstanding.as_ref().map(|o| (client.id, o)))
    }

    /// Topic names the workload uses now.
    pub fn live_topics(&self) -> BTreeSet<String> {
        self.topics.keys().cloned().collect()
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(String, T)]) -> Option<&'a (String, T)>
where
    T: Clone,
{
    if items.is_empty() {
        None
    } else {
        items.get(rng.random_range(0..items.len()))
    }
}

//! Command-line arguments and the parsers for their values.

use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ledge_client::{Acks, Compression, OnError, PluginKind, SERVER_DEFAULT};

/// Help heading of the options every command takes.
const CONNECTION: &str = "Connection options";

/// Command-line client for a Ledge node: manage topics, produce and consume records, run WASM
/// plug-ins.
#[derive(Debug, Parser)]
#[command(name = "ledge", version, propagate_version = true)]
#[command(after_help = "Examples:
  ledge topic create orders --partitions 3 --config retention.ms=604800000
  ledge --server 127.0.0.1:9101,127.0.0.1:9102,127.0.0.1:9103 topic create payments --partitions 6 --replication-factor 3 --config min.insync.replicas=2
  ledge cluster describe
  printf 'order-1:{\"total\":299.99}\\n' | ledge produce orders --key-separator :
  ledge consume orders --from-beginning --max-messages 10 --format json
  ledge consume orders --group billing --from-beginning
  ledge group describe billing
  ledge group reset-offsets billing --topic orders --to-earliest --dry-run
  ledge module upload high-value --module high_value_orders.wasm --kind filter --param threshold=1000
  ledge consume orders --from-beginning --filter high-value --param threshold=500
  ledge transform deploy high-value --module high_value_orders.wasm --kind filter --input orders
  ledge transform describe high-value
  ledge user create alice --mechanism SCRAM-SHA-256 --password-stdin < alice.password
  ledge acl add --allow-principal User:alice --operation Read --topic orders")]
pub(crate) struct Cli {
    /// Node address (host:port, UDP), or a comma-separated bootstrap list of a cluster's nodes
    /// (A,B,C): the first that answers is used, and the rest of the cluster is learnt from it
    #[arg(long, global = true, env = "LEDGE_SERVER", value_name = "ADDR[,ADDR...]", default_value = SERVER_DEFAULT, help_heading = CONNECTION)]
    pub(crate) server: String,

    /// CA certificate (PEM) the node's certificate must be signed by
    /// [default: ./ledge-data/tls/ca.pem when present]
    #[arg(long, global = true, env = "LEDGE_CA", value_name = "FILE", help_heading = CONNECTION)]
    pub(crate) ca: Option<PathBuf>,

    /// Do not verify the node's certificate (still encrypted, but anyone on the path can
    /// impersonate the node): for throwaway nodes only
    #[arg(long, global = true, conflicts_with = "ca", help_heading = CONNECTION)]
    pub(crate) insecure: bool,

    /// Client certificate (PEM) to present to the node, for nodes that authenticate clients
    /// by certificate (`[security] client_auth`); with --key. `ledge-node cert issue` writes one
    #[arg(long, global = true, env = "LEDGE_CERT", value_name = "FILE", requires = "key", help_heading = CONNECTION)]
    pub(crate) cert: Option<PathBuf>,

    /// Private key (PEM) of --cert; must not be readable by group or others (chmod 600)
    #[arg(long, global = true, env = "LEDGE_KEY", value_name = "FILE", requires = "cert", help_heading = CONNECTION)]
    pub(crate) key: Option<PathBuf>,

    /// User to authenticate as, by SASL (for nodes with security.allow_anonymous = false);
    /// the password comes from the LEDGE_PASSWORD environment variable or --password-stdin
    #[arg(long, global = true, value_name = "NAME", help_heading = CONNECTION)]
    pub(crate) user: Option<String>,

    /// Read --user's password from the first line of standard input (instead of
    /// LEDGE_PASSWORD)
    #[arg(long, global = true, requires = "user", help_heading = CONNECTION)]
    pub(crate) password_stdin: bool,

    /// SASL mechanism for --user: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (PLAIN sends the
    /// password itself, inside TLS)
    #[arg(long, global = true, value_name = "MECHANISM", default_value = "SCRAM-SHA-512", value_parser = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"], help_heading = CONNECTION)]
    pub(crate) sasl_mechanism: String,

    /// Name the node's certificate must be issued for
    #[arg(long, global = true, value_name = "NAME", default_value = "localhost", help_heading = CONNECTION)]
    pub(crate) server_name: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create, list, describe, alter, delete and reassign topics
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Show the cluster (nodes, controller, unhealthy partitions), elect preferred leaders,
    /// decommission a node
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Send one record per line of standard input
    Produce(ProduceArgs),
    /// Print records of a topic
    Consume(ConsumeArgs),
    /// List, describe (with lag), reset offsets of, and delete consumer groups
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Upload, list and delete named WASM modules (fetch filters, topic partitioners and
    /// produce filters)
    Module {
        #[command(subcommand)]
        command: ModuleCommand,
    },
    /// Deploy, list, describe, pause, resume and remove topic transforms (WASM modules the
    /// node runs from one topic to another)
    Transform {
        #[command(subcommand)]
        command: TransformCommand,
    },
    /// Create, list and delete SASL users (SCRAM credentials)
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Add, list and remove ACLs (kafka-acls syntax)
    Acl {
        #[command(subcommand)]
        command: AclCommand,
    },
    /// Set, list and remove client quotas: produce and fetch bytes per second per user
    /// (kafka-configs --entity-type users)
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
    },
    /// A live view: node health, topics with produce rates, groups with lag per partition and
    /// a lag trend, transforms with rates and dead letters (refreshed every --interval-ms)
    Top(TopArgs),
    /// Query a stateful transform's table (its state, served by the node running it)
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
    /// Node administration: snapshot the node's data directory for disaster recovery
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Milliseconds between frames (at least 100)
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..))]
    pub(crate) interval_ms: u64,
    /// Exit after this many frames (default: run until interrupted)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) iterations: Option<u64>,
    /// Print one frame and exit (--iterations 1)
    #[arg(long, conflicts_with = "iterations")]
    pub(crate) once: bool,
    /// Output format: tables redrawn in place on a terminal, or one JSON object per frame
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Have the node write a consistent copy of its data directory into DIR on its own host
    /// while it serves (restore it with ledge-node restore --from DIR --data-dir NEW)
    Snapshot(SnapshotArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// Absolute path on the node's host; must not exist, nor be inside its data directory
    #[arg(long, value_name = "DIR")]
    pub(crate) out: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Show progress (partitions and bytes copied) on stderr while the node writes; the
    /// default when stderr is a terminal
    #[arg(long)]
    pub(crate) progress: bool,
    /// How often to ask the node for progress, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = SNAPSHOT_PROGRESS_INTERVAL_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(SNAPSHOT_PROGRESS_INTERVAL_MS_MIN..=SNAPSHOT_PROGRESS_INTERVAL_MS_MAX))]
    pub(crate) progress_interval_ms: u64,
}

/// Default `ledge admin snapshot --progress-interval-ms`.
pub(crate) const SNAPSHOT_PROGRESS_INTERVAL_MS_DEFAULT: u64 = 500;
/// Smallest `--progress-interval-ms`.
pub(crate) const SNAPSHOT_PROGRESS_INTERVAL_MS_MIN: u64 = 50;
/// Largest `--progress-interval-ms`: one minute.
pub(crate) const SNAPSHOT_PROGRESS_INTERVAL_MS_MAX: u64 = 60_000;

#[derive(Debug, Subcommand)]
pub(crate) enum QuotaCommand {
    /// Set a user's (ledge quota set alice ...) or the default user's (--default) byte rates
    Set(QuotaSetArgs),
    /// List every user with a quota, the default user first
    List(ListArgs),
    /// Remove a user's (or the default user's) byte rates: both, or the ones named
    Remove(QuotaRemoveArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("entity").required(true).args(["name", "default"])))]
pub(crate) struct QuotaSetArgs {
    /// The user (the principal User:USER; positional: the global --user is who connects)
    #[arg(value_name = "USER")]
    pub(crate) name: Option<String>,
    /// The default user: every user without a quota of its own
    #[arg(long)]
    pub(crate) default: bool,
    /// Produce request bytes per second (Kafka's producer_byte_rate)
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) producer_byte_rate: Option<u64>,
    /// Fetch response bytes per second (Kafka's consumer_byte_rate)
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) consumer_byte_rate: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("entity").required(true).args(["name", "default"])))]
pub(crate) struct QuotaRemoveArgs {
    /// The user
    #[arg(value_name = "USER")]
    pub(crate) name: Option<String>,
    /// The default user
    #[arg(long)]
    pub(crate) default: bool,
    /// Remove only producer_byte_rate
    #[arg(long)]
    pub(crate) producer_byte_rate: bool,
    /// Remove only consumer_byte_rate
    #[arg(long)]
    pub(crate) consumer_byte_rate: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user, or set its password for one mechanism; the password is read from
    /// standard input and never sent (only a salted hash of it is)
    Create(UserCreateArgs),
    /// List users with their mechanisms and iterations
    List(ListArgs),
    /// Delete a user's credential for one mechanism, or all of them
    Delete(UserDeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UserCreateArgs {
    /// User name (the principal User:NAME)
    pub(crate) name: String,
    /// SCRAM mechanism (the default is the one `--user` logs in with, `--sasl-mechanism`'s
    /// default)
    #[arg(long, value_name = "MECHANISM", default_value = "SCRAM-SHA-512", value_parser = ["SCRAM-SHA-512", "SCRAM-SHA-256"])]
    pub(crate) mechanism: String,
    /// Read the password from standard input (its first line)
    #[arg(long, required = true)]
    pub(crate) password_stdin: bool,
    /// PBKDF2 iterations, 4096 to 16384
    #[arg(long, default_value_t = ledge_client::security::SCRAM_ITERATIONS_DEFAULT)]
    pub(crate) iterations: u32,
}

#[derive(Debug, Args)]
pub(crate) struct UserDeleteArgs {
    /// User name
    pub(crate) name: String,
    /// Only this mechanism's credential [default: every credential the user has]
    #[arg(long, value_name = "MECHANISM", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub(crate) mechanism: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Add ACLs: each principal x operation x resource x host
    Add(AclArgs),
    /// List ACLs (all, or those the options match)
    List(AclListArgs),
    /// Remove the ACLs the options match
    Remove(AclArgs),
}

/// The ACL options, as kafka-acls names them.
#[derive(Debug, Clone, Args, Default)]
pub(crate) struct AclArgs {
    /// Principal allowed (Type:name, e.g. User:alice; User:* for everyone); repeatable
    #[arg(long, value_name = "PRINCIPAL")]
    pub(crate) allow_principal: Vec<String>,
    /// Principal denied; repeatable
    #[arg(long, value_name = "PRINCIPAL")]
    pub(crate) deny_principal: Vec<String>,
    /// Host (IP address) the ACL applies to; repeatable [default: *, every host]
    #[arg(long, value_name = "HOST")]
    pub(crate) host: Vec<String>,
    /// Operation (Read, Write, Create, Delete, Alter, Describe, DescribeConfigs,
    /// AlterConfigs, ClusterAction, IdempotentWrite, All); repeatable [default: All for add,
    /// any for remove]
    #[arg(long, value_name = "OPERATION")]
    pub(crate) operation: Vec<String>,
    /// Topic (or prefix, or *); repeatable
    #[arg(long, value_name = "TOPIC")]
    pub(crate) topic: Vec<String>,
    /// Consumer group; repeatable
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Vec<String>,
    /// The cluster resource (kafka-cluster)
    #[arg(long)]
    pub(crate) cluster: bool,
    /// Transactional id; repeatable
    #[arg(long, value_name = "ID")]
    pub(crate) transactional_id: Vec<String>,
    /// Named WASM module; repeatable
    #[arg(long, value_name = "MODULE")]
    pub(crate) module: Vec<String>,
    /// Topic transform; repeatable
    #[arg(long, value_name = "TRANSFORM")]
    pub(crate) transform: Vec<String>,
    /// How resource names match: literal (the name, or * for all) or prefixed
    #[arg(long, value_name = "TYPE", default_value = "literal")]
    pub(crate) resource_pattern_type: String,
}

#[derive(Debug, Args)]
pub(crate) struct AclListArgs {
    /// Only ACLs of this principal
    #[arg(long, value_name = "PRINCIPAL")]
    pub(crate) principal: Option<String>,
    /// Topic; repeatable
    #[arg(long, value_name = "TOPIC")]
    pub(crate) topic: Vec<String>,
    /// Consumer group; repeatable
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Vec<String>,
    /// The cluster resource
    #[arg(long)]
    pub(crate) cluster: bool,
    /// Transactional id; repeatable
    #[arg(long, value_name = "ID")]
    pub(crate) transactional_id: Vec<String>,
    /// Named WASM module; repeatable
    #[arg(long, value_name = "MODULE")]
    pub(crate) module: Vec<String>,
    /// Topic transform; repeatable
    #[arg(long, value_name = "TRANSFORM")]
    pub(crate) transform: Vec<String>,
    /// How resource names match: any (exact name, any pattern type), match (every ACL that
    /// applies to the named resource), literal or prefixed
    #[arg(long, value_name = "TYPE", default_value = "any")]
    pub(crate) resource_pattern_type: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// List the nodes (id, address, alive, node epoch), the controller, and the
    /// under-replicated and offline partitions
    Describe(ListArgs),
    /// Move leadership back to each partition's preferred replica (the first) where it is
    /// alive and in sync, now (the controller also does it every
    /// cluster.leader_imbalance_check_interval_ms)
    ElectLeaders(ElectLeadersArgs),
    /// Remove a stopped node that holds no replica from the cluster (move its replicas
    /// away first with `ledge topic reassign`)
    Decommission(DecommissionArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ElectLeadersArgs {
    /// Only this topic (default: every topic)
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct DecommissionArgs {
    /// The node's id
    #[arg(long)]
    pub(crate) node: u32,
}

#[derive(Debug, Args)]
pub(crate) struct ReassignArgs {
    /// Topic name (not with --plan-file)
    pub(crate) name: Option<String>,
    /// The partition to move
    #[arg(long)]
    pub(crate) partition: Option<u32>,
    /// The node ids to move it to, the preferred leader first: 2,3,4
    #[arg(long, value_delimiter = ',')]
    pub(crate) replicas: Option<Vec<u32>>,
    /// Cancel the partition's reassignment (back to its original replicas)
    #[arg(long, conflicts_with_all = ["replicas", "status", "plan_file"])]
    pub(crate) cancel: bool,
    /// Show the reassignments in progress (of NAME, or of every topic)
    #[arg(long, conflicts_with_all = ["replicas", "partition", "plan_file"])]
    pub(crate) status: bool,
    /// Move many partitions: a JSON file as kafka-reassign-partitions reads, for example
    /// `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3]}]}`
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "partition", "replicas"])]
    pub(crate) plan_file: Option<PathBuf>,
    /// Output format (of --status)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModuleCommand {
    /// Store a .wasm module under a name (replacing the name's previous module)
    Upload(ModuleUploadArgs),
    /// List named modules with their kind, size, hash and default parameters
    List(ListArgs),
    /// Delete a named module (not while a topic config names it)
    Delete(ModuleDeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ModuleUploadArgs {
    /// Module name: what `consume --filter` and the topic configs partitioner.module and
    /// produce.filter.module refer to
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) source: ModuleSourceArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// The module a command sends: its file, kind and parameters (`module upload` and
/// `transform deploy` take the same three).
#[derive(Debug, Args)]
pub(crate) struct ModuleSourceArgs {
    /// The compiled module (cargo build --release --target wasm32-unknown-unknown)
    #[arg(long, value_name = "FILE.wasm")]
    pub(crate) module: PathBuf,
    /// What the module does with each record (it must export that kind's entry point)
    #[arg(long, value_enum)]
    pub(crate) kind: KindArg,
    /// Parameter KEY=VALUE handed to the module (repeatable), e.g. threshold=1000; an
    /// uploaded module keeps them as its defaults
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub(crate) params: Vec<(String, String)>,
    /// The module's bytes, read before connecting
    #[arg(skip)]
    pub(crate) module_bytes: Bytes,
}

#[derive(Debug, Args)]
pub(crate) struct ModuleDeleteArgs {
    /// Module name
    pub(crate) name: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TableCommand {
    /// Print one key's state
    Get(TableGetArgs),
    /// Print the keys (with a prefix) and their states in key order
    Scan(TableScanArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TableGetArgs {
    /// The stateful transform
    pub(crate) name: String,
    /// The group key (UTF-8)
    #[arg(value_name = "KEY")]
    pub(crate) group_key: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct TableScanArgs {
    /// The stateful transform
    pub(crate) name: String,
    /// Only keys starting with this (UTF-8)
    #[arg(long, default_value = "")]
    pub(crate) prefix: String,
    /// At most this many entries (0: the node's transforms.table_scan_entries_max)
    #[arg(long, default_value_t = 0)]
    pub(crate) limit: u32,
    /// Output format: columns, or one JSON object per line
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

// Parsed once per run: boxing the deploy arguments would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum TransformCommand {
    /// Deploy a transform, or a new version of one (keeps its input positions)
    Deploy(TransformDeployArgs),
    /// List transforms with their state, topics and record counts
    List(ListArgs),
    /// Show everything about a transform: definition, counters, last error, positions
    Describe(TransformDescribeArgs),
    /// Pause a transform (it keeps its positions)
    Pause(TransformNameArgs),
    /// Resume a paused or stopped transform where it left off
    Resume(TransformNameArgs),
    /// Remove a transform and its positions (its output and dead-letter topics stay)
    Remove(TransformNameArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TransformDeployArgs {
    /// Transform name
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) source: ModuleSourceArgs,
    /// Topic to read (it must exist)
    #[arg(long, value_name = "TOPIC")]
    pub(crate) input: String,
    /// Topic to write; created with the input's partition count if missing
    /// [default: INPUT.NAME]
    #[arg(long, value_name = "TOPIC")]
    pub(crate) output: Option<String>,
    /// What to do with a record the module fails: send it to the dead-letter topic, skip it,
    /// or stop the transform before it
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = OnErrorArg::DeadLetter)]
    pub(crate) on_error: OnErrorArg,
    /// Where failed records go with --on-error dead-letter; created if missing
    /// [default: NAME.dead-letter]
    #[arg(long, value_name = "TOPIC")]
    pub(crate) dead_letter_topic: Option<String>,
    #[command(flatten)]
    pub(crate) join: JoinArgs,
    /// Boxed: the window flags would make this variant much larger than the others.
    #[command(flatten)]
    pub(crate) window: Box<WindowArgs>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// A join transform's second input (`--kind join`); both inputs need equal partition counts.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// Stream-table join: read TOPIC as a table (latest record per key, a null value
    /// deletes it) and join each input record with its key's current record
    #[arg(long, value_name = "TOPIC", conflicts_with = "join_with")]
    pub(crate) table: Option<String>,
    /// Stream-stream join: pair input records with TOPIC's records of the same key within
    /// --join-window
    #[arg(long, value_name = "TOPIC")]
    pub(crate) join_with: Option<String>,
    /// How far apart two records' timestamps may be to pair, either way (5m, 30s, 500ms)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "join_with")]
    pub(crate) join_window: Option<std::time::Duration>,
    /// How far a --join-with record may precede its input partner [default: --join-window]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "join_with")]
    pub(crate) join_before: Option<std::time::Duration>,
    /// How far a --join-with record may follow its input partner [default: --join-window]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "join_with")]
    pub(crate) join_after: Option<std::time::Duration>,
    /// How long records behind the largest timestamp seen are still joined; later ones are
    /// counted late and dropped [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "join_with")]
    pub(crate) join_grace: Option<std::time::Duration>,
}

/// `5m`, `30s`, `500ms`, `1h 30m`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{error} (e.g. 5m, 30s, 500ms)"))
}

/// An aggregate's event-time window (`transform deploy`), e.g. `--window tumbling
/// --window-size 1m --grace 10s --retention 1h --emit suppress`. Durations are
/// milliseconds (`60000`) or with a unit (`500ms`, `10s`, `1m`, `1h`, `1d`).
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Windows (aggregate transforms)")]
pub(crate) struct WindowArgs {
    /// Window an aggregate by record timestamp: fixed non-overlapping windows (tumbling,
    /// needs --window-size), overlapping ones (hopping, --window-size and
    /// --window-advance), or per-key sessions (session, --window-gap; the module must
    /// export ledge_merge)
    #[arg(long = "window", value_name = "KIND", value_parser = ["tumbling", "hopping", "session"])]
    pub(crate) window_kind: Option<String>,
    /// window.size_ms: a tumbling or hopping window's length
    #[arg(long = "window-size", value_name = "DURATION", value_parser = parse_duration_ms, requires = "window_kind")]
    pub(crate) size_ms: Option<i64>,
    /// window.advance_ms: how far apart hopping windows start
    #[arg(long = "window-advance", value_name = "DURATION", value_parser = parse_duration_ms, requires = "window_kind")]
    pub(crate) advance_ms: Option<i64>,
    /// window.gap_ms: the inactivity that ends a session
    #[arg(long = "window-gap", value_name = "DURATION", value_parser = parse_duration_ms, requires = "window_kind")]
    pub(crate) gap_ms: Option<i64>,
    /// window.grace_ms: how long after a window's end its late records still count
    /// (by record time) [default: 0]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, requires = "window_kind")]
    pub(crate) grace: Option<i64>,
    /// window.retention_ms: how long a closed window's state stays in the table
    /// [default: 1d]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, requires = "window_kind")]
    pub(crate) retention: Option<i64>,
    /// window.emit: a change record for every change (changes), or one final result
    /// per window when it closes (suppress) [default: changes]
    #[arg(long, value_name = "MODE", value_parser = ["changes", "suppress"], requires = "window_kind")]
    pub(crate) emit: Option<String>,
}

impl WindowArgs {
    /// The deploy request's window, if `--window` was given.
    pub(crate) fn settings(&self) -> Option<ledge_client::TransformWindow> {
        let kind = self.window_kind.clone()?;
        Some(ledge_client::TransformWindow {
            kind,
            size_ms: self.size_ms,
            advance_ms: self.advance_ms,
            gap_ms: self.gap_ms,
            grace_ms: self.grace,
            retention_ms: self.retention,
            emit: self.emit.clone().unwrap_or_default(),
        })
    }
}

/// Parses a duration into milliseconds: plain digits are milliseconds (`60000`); otherwise
/// a number with a unit (`500ms`, `10s`, `1m`, `2h`, `1d`, or combined: `1m30s`).
pub(crate) fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return if ms < 0 {
            Err(format!("{text} is negative"))
        } else {
            Ok(ms)
        };
    }
    let duration = humantime::parse_duration(text).map_err(|error| {
        format!("{error}: expected milliseconds (60000) or a duration such as 500ms, 10s, 1m, 1h")
    })?;
    i64::try_from(duration.as_millis()).map_err(|_| format!("{text} is too long"))
}

#[derive(Debug, Args)]
pub(crate) struct TransformDescribeArgs {
    /// Transform name
    pub(crate) name: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct TransformNameArgs {
    /// Transform name
    pub(crate) name: String,
}

/// `--kind` values: clap's face of `PluginKind` (same names, each with its help line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KindArg {
    /// Keeps or drops each record
    Filter,
    /// Replaces each record with exactly one record
    Map,
    /// Drops a record or replaces it with one record
    #[value(name = "filter_map", alias = "filter-map")]
    FilterMap,
    /// Replaces each record with zero or more records (transforms only)
    #[value(name = "flat_map", alias = "flat-map")]
    FlatMap,
    /// Picks each record's partition (topic config partitioner.module; as a transform it
    /// repartitions: each record is copied to the output partition it picks)
    Partitioner,
    /// Folds records into per-key state (stateful; docs/STREAMS.md): a transform whose
    /// output is a topic of changes, its state kept in __transform.NAME.changelog
    Aggregate,
    /// Joins records of two inputs (stateful; docs/STREAMS.md; upload only until stateful
    /// transforms are deployable)
    Join,
}

impl From<KindArg> for PluginKind {
    fn from(value: KindArg) -> Self {
        match value {
            KindArg::Filter => Self::Filter,
            KindArg::Map => Self::Map,
            KindArg::FilterMap => Self::FilterMap,
            KindArg::FlatMap => Self::FlatMap,
            KindArg::Partitioner => Self::Partitioner,
            KindArg::Aggregate => Self::Aggregate,
            KindArg::Join => Self::Join,
        }
    }
}

/// `--on-error` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnErrorArg {
    /// Send the record to the dead-letter topic, with the error in its headers
    DeadLetter,
    /// Drop the record (counted as dead)
    Skip,
    /// Stop the transform before the record's batch until it is resumed
    Stop,
}

impl From<OnErrorArg> for OnError {
    fn from(value: OnErrorArg) -> Self {
        match value {
            OnErrorArg::DeadLetter => Self::DeadLetter,
            OnErrorArg::Skip => Self::Skip,
            OnErrorArg::Stop => Self::Stop,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups with their state and member count
    List(ListArgs),
    /// Show a group's members and, per partition, committed offset, end offset and lag
    Describe(GroupDescribeArgs),
    /// Move a group's committed offsets for a topic (the group must have no active members)
    #[command(group = clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_datetime", "to_offset", "shift_by"]))]
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group and its committed offsets (the group must have no active members)
    Delete(GroupDeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GroupDescribeArgs {
    /// Group id
    pub(crate) group: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct ResetOffsetsArgs {
    /// Group id
    pub(crate) group: String,
    /// Topic whose partitions are reset: all of them, or only those listed after a colon
    /// (`orders:0,2`, as kafka-consumer-groups)
    #[arg(long, value_name = "TOPIC[:P,...]", value_parser = parse_topic_partitions)]
    pub(crate) topic: TopicPartitions,
    /// To the oldest record still stored
    #[arg(long)]
    pub(crate) to_earliest: bool,
    /// To the end: skip every record written so far
    #[arg(long)]
    pub(crate) to_latest: bool,
    /// To the first record at or after this time, RFC 3339 in UTC (2024-05-01T12:00:00Z)
    #[arg(long, value_name = "TIME", value_parser = parse_datetime)]
    pub(crate) to_datetime: Option<i64>,
    /// To this offset (clamped to the stored range)
    #[arg(long, value_name = "N")]
    pub(crate) to_offset: Option<i64>,
    /// Move each committed offset by N (negative to re-read), clamped to the stored range
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) shift_by: Option<i64>,
    /// Show the plan without committing it
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Output format of the plan
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct GroupDeleteArgs {
    /// Group id
    pub(crate) group: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic
    Create(CreateArgs),
    /// List topics with their partition and record counts
    List(ListArgs),
    /// Show a topic's partitions (start and end offsets) and configs
    Describe(DescribeArgs),
    /// Change a topic's configs, or add partitions (--partitions N)
    Alter(AlterArgs),
    /// Delete a topic and all its records
    Delete(DeleteArgs),
    /// Move a partition to other nodes while it serves (--partition P --replicas 2,3,4),
    /// cancel a move (--cancel), show moves in progress (--status), or move many
    /// (--plan-file)
    Reassign(ReassignArgs),
}

/// How commands that print data print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns (or a sentence) for people
    Table,
    /// JSON for scripts
    Json,
}

/// How `consume` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RecordFormat {
    /// The value, one record per line (with --print-key, the key first)
    Text,
    /// One JSON object per line: topic, partition, offset, timestamp, key, value, headers
    Json,
}

/// How `produce` reports what it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProduceFormat {
    /// A summary line on standard error
    Text,
    /// Also one JSON object per input line on standard output, in input order: line, topic,
    /// partition, offset, timestamp (offset null with --acks 0; "dropped": true for a record
    /// the topic's produce filter dropped; "error" for a record that was not written;
    /// "throttle_time_ms" when the node throttled the client for its produce quota)
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Topic name: 1-249 of [a-zA-Z0-9._-]
    pub(crate) name: String,
    /// Number of partitions
    #[arg(long, short, value_name = "N", default_value_t = 1)]
    pub(crate) partitions: u32,
    /// Copies of each partition, each on its own node (at most the live nodes; a node
    /// without a cluster section is one node) (default: the cluster's default_replication_factor)
    #[arg(long, short, value_name = "R", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) replication_factor: Option<u16>,
    /// Topic config KEY=VALUE (repeatable), e.g. retention.ms=604800000, cleanup.policy=compact,
    /// min.insync.replicas=2 (at most the replication factor)
    #[arg(long = "config", short, value_name = "KEY=VALUE", value_parser = parse_config)]
    pub(crate) configs: Vec<(String, String)>,
    /// Only check that the topic could be created
    #[arg(long)]
    pub(crate) validate_only: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// Topic name
    pub(crate) name: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("change").required(true).multiple(true).args(["partitions", "configs", "delete_configs"]))]
pub(crate) struct AlterArgs {
    /// Topic name
    pub(crate) name: String,
    /// Grow the topic to N partitions in all (more than now: partitions are only added;
    /// keyed records then map to other partitions, as in Kafka)
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) partitions: Option<u32>,
    /// With --partitions in a cluster: the nodes of each new partition, the preferred leader
    /// first, e.g. 1:2:3 (repeatable, once per new partition; default: placed by the cluster)
    #[arg(long = "replica-assignment", value_name = "N:N:...", value_parser = parse_replica_list, requires = "partitions")]
    pub(crate) replica_assignments: Vec<Vec<u32>>,
    /// Set config KEY=VALUE (repeatable)
    #[arg(long = "config", short, value_name = "KEY=VALUE", value_parser = parse_config)]
    pub(crate) configs: Vec<(String, String)>,
    /// Return config KEY to the node's default (repeatable)
    #[arg(long = "delete-config", value_name = "KEY", value_parser = parse_config_key)]
    pub(crate) delete_configs: Vec<String>,
    /// Only check that the change is valid
    #[arg(long)]
    pub(crate) validate_only: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// `1:2:3`: node ids of one partition's replicas.
fn parse_replica_list(text: &str) -> Result<Vec<u32>, String> {
    text.split(':')
        .map(|node| {
            node.trim().parse::<u32>().map_err(|_| {
                format!("{node:?} in {text:?} is not a node id (expected N:N:..., e.g. 1:2:3)")
            })
        })
        .collect()
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Topic name
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Topic to write to
    pub(crate) topic: String,
    /// Split each line at the first S into key and value (lines without S are an error)
    #[arg(long, value_name = "S", value_parser = parse_separator)]
    pub(crate) key_separator: Option<String>,
    /// Acknowledgement: 0 (none), 1 (written), all (synced to disk; enables idempotence)
    #[arg(long, value_name = "ACKS", default_value = "all", value_parser = parse_acks)]
    pub(crate) acks: Acks,
    /// Write every record to this partition (default: by key, or sticky without keys)
    #[arg(long, value_name = "P")]
    pub(crate) partition: Option<u32>,
    /// Batch compression
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub(crate) compression: CompressionArg,
    /// Header KEY=VALUE added to every record (repeatable)
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,
    /// Milliseconds a batch waits for more lines before it is sent
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub(crate) linger_ms: u64,
    /// Send an empty value, or an empty key, as null (kcat's -Z): with --key-separator :,
    /// the line "user-42:" is a tombstone for key user-42 on a compacted topic
    #[arg(long, short = 'Z')]
    pub(crate) empty_as_null: bool,
    /// A partition's batch is ready to leave at this many bytes (the SDK's batch_size);
    /// suffixes KiB and MiB accepted
    #[arg(long, value_name = "BYTES", default_value = "16KiB", value_parser = parse_bytes)]
    pub(crate) batch_size: usize,
    /// A ready batch that cannot leave yet grows up to this many bytes (batch_size_max); a
    /// batch never exceeds the topic's max.message.bytes
    #[arg(long, value_name = "BYTES", default_value = "512KiB", value_parser = parse_bytes)]
    pub(crate) batch_size_max: usize,
    /// Largest record, and most batch bytes per request (max_request_size)
    /// [default: the topic's max.message.bytes, at least 1MiB]
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) max_request_size: Option<usize>,
    /// Output format
    #[arg(long, value_enum, default_value_t = ProduceFormat::Text)]
    pub(crate) format: ProduceFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// Topic to read
    pub(crate) topic: String,
    /// Start at the oldest record still stored (default: only new records)
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub(crate) from_beginning: bool,
    /// Start, in each partition read, at the first record whose timestamp is at or after
    /// this time: milliseconds since the Unix epoch, or RFC 3339 in UTC
    /// (2024-05-01T12:00:00Z); partitions with no such record start at their end
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with_all = ["offset", "group"])]
    pub(crate) from_timestamp: Option<i64>,
    /// Start at this offset (in each partition read)
    #[arg(long, value_name = "N", conflicts_with = "group")]
    pub(crate) offset: Option<i64>,
    /// Read only this partition (default: all)
    #[arg(long, value_name = "P", conflicts_with = "group")]
    pub(crate) partition: Option<u32>,
    /// Join consumer group G: read the partitions it assigns this member, starting at the
    /// group's committed offsets (--from-beginning applies only where it has none), and commit
    /// what was printed before exiting
    #[arg(long, value_name = "G")]
    pub(crate) group: Option<String>,
    /// With --group: the node removes this member if it hears nothing for this long
    #[arg(long, value_name = "MS", default_value_t = 10_000, requires = "group")]
    pub(crate) session_timeout_ms: u64,
    /// Exit after this many records
    #[arg(long, value_name = "N")]
    pub(crate) max_messages: Option<u64>,
    /// Exit after this many milliseconds without a record (default: wait forever)
    #[arg(long, value_name = "T")]
    pub(crate) timeout_ms: Option<u64>,
    /// Output format; in JSON, keys and values that are not UTF-8 print as {"base64": "..."}
    #[arg(long, value_enum, default_value_t = RecordFormat::Text)]
    pub(crate) format: RecordFormat,
    /// In text format, print the key before the value
    #[arg(long)]
    pub(crate) print_key: bool,
    /// In text format, what goes between key and value
    #[arg(long, value_name = "S", default_value = "\t")]
    pub(crate) key_separator: String,
    /// Have the node run module NAME (a filter, map or filter_map from `ledge module upload`)
    /// on every record before sending it; records it drops are not printed
    #[arg(long, value_name = "NAME")]
    pub(crate) filter: Option<String>,
    /// With --filter: parameter KEY=VALUE overriding the module's default (repeatable)
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param, requires = "filter")]
    pub(crate) params: Vec<(String, String)>,
}

/// `--compression` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(value: CompressionArg) -> Self {
        match value {
            CompressionArg::None => Self::None,
            CompressionArg::Gzip => Self::Gzip,
            CompressionArg::Snappy => Self::Snappy,
            CompressionArg::Lz4 => Self::Lz4,
            CompressionArg::Zstd => Self::Zstd,
        }
    }
}

/// Parses `KEY=VALUE` for a topic config. Keys are dotted words; the value may not be empty
/// (use `--delete-config KEY` to return a key to its default).
pub(crate) fn parse_config(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!(
            "expected KEY=VALUE, e.g. retention.ms=604800000 (got {text:?})"
        ));
    };
    let key = parse_config_key(key.trim())?;
    let value = value.trim();
    if value.is_empty() {
        return Err(format!(
            "config {key} has no value; use --delete-config {key} to return it to the default"
        ));
    }
    Ok((key, value.to_string()))
}

/// A config key: letters, digits, `.`, `_` and `-`.
pub(crate) fn parse_config_key(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("config key is empty; expected KEY=VALUE".into());
    }
    if let Some(bad) = key
        .chars()
        .find(|character| !(character.is_ascii_alphanumeric() || ".-_".contains(*character)))
    {
        return Err(format!(
            "config key {key:?} contains {bad:?}; keys look like retention.ms"
        ));
    }
    Ok(key.to_string())
}

/// Parses `KEY=VALUE` for a header: any non-empty key, any value.
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "expected KEY=VALUE with a non-empty key (got {text:?})"
        )),
    }
}

/// Parses `KEY=VALUE` for a module parameter: a non-empty key; the value is the text after
/// the first `=` (it may be empty or contain `=`), parsed by the module.
pub(crate) fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        Some(_) => Err(format!(
            "parameter {text:?} has no name; expected KEY=VALUE, e.g. threshold=1000"
        )),
        None => Err(format!(
            "parameter {text:?} has no '='; expected KEY=VALUE, e.g. threshold=1000"
        )),
    }
}

pub(crate) fn parse_acks(text: &str) -> Result<Acks, String> {
    text.parse()
}

/// A topic and, optionally, some of its partitions (`orders`, `orders:0,2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopicPartitions {
    /// The topic.
    pub(crate) topic: String,
    /// The partitions listed after the colon, ascending and without repeats; `None`: all.
    pub(crate) partitions: Option<Vec<u32>>,
}

/// Parses `TOPIC` or `TOPIC:P,P,...` (kafka-consumer-groups' `--topic` syntax). Topic names
/// never contain a colon (letters, digits, `.`, `_`, `-`), so the first colon splits.
pub(crate) fn parse_topic_partitions(text: &str) -> Result<TopicPartitions, String> {
    let Some((topic, list)) = text.split_once(':') else {
        return Ok(TopicPartitions {
            topic: text.to_string(),
            partitions: None,
        });
    };
    if topic.is_empty() {
        return Err(format!(
            "{text:?} names no topic before the colon; expected TOPIC or TOPIC:0,2"
        ));
    }
    let mut partitions = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let partition: u32 = item.parse().map_err(|_| {
            format!("{item:?} in {text:?} is not a partition number; expected TOPIC or TOPIC:0,2")
        })?;
        partitions.push(partition);
    }
    partitions.sort_unstable();
    partitions.dedup();
    Ok(TopicPartitions {
        topic: topic.to_string(),
        partitions: Some(partitions),
    })
}

/// Parses an RFC 3339 time (`2024-05-01T12:00:00Z`, fractions allowed, UTC) into ms since
/// the Unix epoch.
pub(crate) fn parse_datetime(text: &str) -> Result<i64, String> {
    let time = humantime::parse_rfc3339_weak(text).map_err(|error| {
        format!("{error}: expected an RFC 3339 time in UTC such as 2024-05-01T12:00:00Z")
    })?;
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{text} is before 1970"))?;
    i64::try_from(since_epoch.as_millis()).map_err(|_| format!("{text} is too far away"))
}

/// Parses a time given as milliseconds since the Unix epoch or as RFC 3339 in UTC.
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(ms) if ms >= 0 => Ok(ms),
        Ok(_) => Err(format!("{text} is before 1970")),
        Err(_) => parse_datetime(text).map_err(|error| {
            format!("{error}, or milliseconds since the Unix epoch such as 1714564800000")
        }),
    }
}

/// Parses a positive byte count: digits, optionally followed by KiB or MiB (1024-based).
pub(crate) fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = if let Some(digits) = text.strip_suffix("MiB") {
        (digits, 1024 * 1024)
    } else if let Some(digits) = text.strip_suffix("KiB") {
        (digits, 1024)
    } else {
        (text, 1)
    };
    let count: usize = digits.trim().parse().map_err(|_| {
        format!("expected a byte count such as 1048576, 512KiB or 4MiB (got {text:?})")
    })?;
    match count.checked_mul(unit) {
        Some(0) => Err("the byte count must be at least 1".into()),
        Some(bytes) if u32::try_from(bytes).is_ok() => Ok(bytes),
        _ => Err(format!("{text} is too large: at most 4GiB - 1")),
    }
}

pub(crate) fn parse_separator(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the key separator cannot be empty".into());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: window durations take milliseconds or a unit, and refuse what is neither.
    #[test]
    fn window_durations_take_ms_or_a_unit() {
        assert_eq!(parse_duration_ms("60000"), Ok(60_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert!(parse_duration_ms("-5").is_err());
        assert!(parse_duration_ms("soon").is_err());
    }

    #[test]
    fn configs_parse_as_key_value() {
        assert_eq!(
            parse_config("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(
            parse_config(" cleanup.policy = compact "),
            Ok(("cleanup.policy".into(), "compact".into()))
        );
        // Only the first '=' splits: values may contain '='.
        assert_eq!(parse_config("a.b=x=y"), Ok(("a.b".into(), "x=y".into())));
    }

    #[test]
    fn bad_configs_say_what_is_expected() {
        assert!(
            parse_config("retention.ms")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(parse_config("=5").unwrap_err().contains("empty"));
        assert!(
            parse_config("retention.ms=")
                .unwrap_err()
                .contains("--delete-config")
        );
        assert!(parse_config("bad key=1").unwrap_err().contains("' '"));
        assert!(parse_config_key("").is_err());
    }

    #[test]
    fn headers_and_acks_parse() {
        assert_eq!(
            parse_header("trace=abc"),
            Ok(("trace".into(), "abc".into()))
        );
        assert_eq!(parse_header("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_header("=x").is_err());
        assert!(parse_header("novalue").is_err());
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert_eq!(parse_acks("0"), Ok(Acks::None));
        assert!(parse_acks("2").unwrap_err().contains("0, 1 or all"));
    }

    #[test]
    fn datetimes_parse_as_utc_milliseconds() {
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(
            parse_datetime("2024-05-01T12:00:00.5Z"),
            Ok(1_714_564_800_500)
        );
        assert!(
            parse_datetime("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn byte_counts_and_times_parse() {
        assert_eq!(parse_bytes("60000"), Ok(60_000));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("4MiB"), Ok(4 * 1024 * 1024));
        assert!(parse_bytes("0").unwrap_err().contains("at least 1"));
        assert!(parse_bytes("4MB").unwrap_err().contains("4MiB"));
        assert!(parse_bytes("8192MiB").unwrap_err().contains("too large"));
        assert_eq!(parse_time("1714564800000"), Ok(1_714_564_800_000));
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Ok(1_714_564_800_000));
        assert!(parse_time("-5").unwrap_err().contains("before 1970"));
        assert!(parse_time("soon").unwrap_err().contains("milliseconds"));
        assert!(
            Cli::try_parse_from([
                "ledge",
                "consume",
                "t",
                "--from-timestamp",
                "5",
                "--offset",
                "1"
            ])
            .is_err()
        );
    }

    #[test]
    fn reset_offsets_needs_exactly_one_target() {
        let base = ["ledge", "group", "reset-offsets", "g", "--topic", "t"];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from([&base[..], &["--to-earliest"]].concat()).is_ok());
        assert!(Cli::try_parse_from([&base[..], &["--shift-by", "-5"]].concat()).is_ok());
        assert!(
            Cli::try_parse_from([&base[..], &["--to-earliest", "--to-latest"]].concat()).is_err()
        );
        assert!(
            Cli::try_parse_from(["ledge", "consume", "t", "--group", "g", "--partition", "1"])
                .is_err()
        );
    }

    #[test]
    fn reset_offsets_takes_a_topic_or_some_of_its_partitions() {
        assert_eq!(
            parse_topic_partitions("orders"),
            Ok(TopicPartitions {
                topic: "orders".into(),
                partitions: None
            })
        );
        assert_eq!(
            parse_topic_partitions("orders:2,0, 2"),
            Ok(TopicPartitions {
                topic: "orders".into(),
                partitions: Some(vec![0, 2])
            })
        );
        for bad in ["orders:", "orders:x", "orders:1,,2", ":1", "orders:-1"] {
            let error = parse_topic_partitions(bad).unwrap_err();
            assert!(error.contains("TOPIC:0,2"), "{bad}: {error}");
        }
        let parsed = Cli::try_parse_from([
            "ledge",
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders:0",
            "--to-earliest",
        ]);
        assert!(parsed.is_ok());
    }

    #[test]
    fn params_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_param("threshold=1000"),
            Ok(("threshold".into(), "1000".into()))
        );
        assert_eq!(parse_param("empty="), Ok(("empty".into(), String::new())));
        assert_eq!(parse_param("expr=a=b"), Ok(("expr".into(), "a=b".into())));
        let error = parse_param("threshold").unwrap_err();
        assert!(
            error.contains("no '='") && error.contains("KEY=VALUE"),
            "{error}"
        );
        assert!(parse_param("=5").unwrap_err().contains("no name"));
        assert!(parse_param(" =5").is_err());
    }

    /// Goal: the plug-in commands take the flags the docs show, and refuse what they cannot
    /// carry out. Method: parse whole command lines.
    #[test]
    fn module_and_transform_commands_parse() {
        let cli = Cli::try_parse_from([
            "ledge",
            "module",
            "upload",
            "high-value",
            "--module",
            "f.wasm",
            "--kind",
            "filter",
            "--param",
            "threshold=1000",
            "--param",
            "currency=EUR",
        ])
        .unwrap();
        let Command::Module {
            command: ModuleCommand::Upload(upload),
        } = cli.command
        else {
            panic!("not an upload: {cli:?}");
        };
        assert_eq!(upload.source.kind, KindArg::Filter);
        assert_eq!(upload.source.params.len(), 2);
        assert!(
            upload.source.module_bytes.is_empty(),
            "read later, before connecting"
        );
        // Kinds go by the node's names; '-' works for '_'.
        for kind in ["filter_map", "filter-map", "flat_map", "partitioner", "map"] {
            let line = [
                "ledge", "module", "upload", "m", "--module", "f.wasm", "--kind", kind,
            ];
            assert!(Cli::try_parse_from(line).is_ok(), "{kind}");
        }
        let unknown = [
            "ledge", "module", "upload", "m", "--module", "f.wasm", "--kind", "reducer",
        ];
        let error = Cli::try_parse_from(unknown).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
        let no_file = ["ledge", "module", "upload", "m", "--kind", "map"];
        assert!(Cli::try_parse_from(no_file).is_err());
        let bad_param = [
            "ledge",
            "module",
            "upload",
            "m",
            "--module",
            "f.wasm",
            "--kind",
            "map",
            "--param",
            "threshold",
        ];
        let error = Cli::try_parse_from(bad_param).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);

        let cli = Cli::try_parse_from([
            "ledge",
            "transform",
            "deploy",
            "high-value",
            "--module",
            "f.wasm",
            "--kind",
            "filter",
            "--input",
            "orders",
            "--on-error",
            "skip",
        ])
        .unwrap();
        let Command::Transform {
            command: TransformCommand::Deploy(deploy),
        } = cli.command
        else {
            panic!("not a deploy: {cli:?}");
        };
        assert_eq!(deploy.on_error, OnErrorArg::Skip);
        assert_eq!(deploy.output, None);
        assert_eq!(deploy.dead_letter_topic, None);
        let defaults = Cli::try_parse_from([
            "ledge",
            "transform",
            "deploy",
            "t",
            "--module",
            "f.wasm",
            "--kind",
            "map",
            "--input",
            "in",
        ])
        .unwrap();
        let Command::Transform {
            command: TransformCommand::Deploy(deploy),
        } = defaults.command
        else {
            panic!("not a deploy");
        };
        assert_eq!(OnError::from(deploy.on_error), OnError::DeadLetter);
        assert_eq!(deploy.window.settings(), None);
        let windowed = Cli::try_parse_from([
            "ledge",
            "transform",
            "deploy",
            "per-minute",
            "--module",
            "t.wasm",
            "--kind",
            "aggregate",
            "--input",
            "orders",
            "--window",
            "tumbling",
            "--window-size",
            "1m",
            "--grace",
            "10s",
            "--retention",
            "1h",
            "--emit",
            "suppress",
        ])
        .unwrap();
        let Command::Transform {
            command: TransformCommand::Deploy(deploy),
        } = windowed.command
        else {
            panic!("not a deploy");
        };
        assert_eq!(
            deploy.window.settings(),
            Some(ledge_client::TransformWindow {
                kind: "tumbling".into(),
                size_ms: Some(60_000),
                advance_ms: None,
                gap_ms: None,
                grace_ms: Some(10_000),
                retention_ms: Some(3_600_000),
                emit: "suppress".into(),
            })
        );
        // Window settings without --window are refused, as is an unknown kind.
        let size_alone = [
            "ledge",
            "transform",
            "deploy",
            "t",
            "--module",
            "f.wasm",
            "--kind",
            "aggregate",
            "--input",
            "in",
            "--window-size",
            "1m",
        ];
        assert!(Cli::try_parse_from(size_alone).is_err());
        let sliding = [
            "ledge",
            "transform",
            "deploy",
            "t",
            "--module",
            "f.wasm",
            "--kind",
            "aggregate",
            "--input",
            "in",
            "--window",
            "sliding",
        ];
        assert!(Cli::try_parse_from(sliding).is_err());
        let no_input = [
            "ledge",
            "transform",
            "deploy",
            "t",
            "--module",
            "f.wasm",
            "--kind",
            "map",
        ];
        assert!(Cli::try_parse_from(no_input).is_err());
        let bad_policy = [
            "ledge",
            "transform",
            "deploy",
            "t",
            "--module",
            "f.wasm",
            "--kind",
            "map",
            "--input",
            "in",
            "--on-error",
            "retry",
        ];
        assert!(Cli::try_parse_from(bad_policy).is_err());
        for action in ["pause", "resume", "remove", "describe"] {
            assert!(Cli::try_parse_from(["ledge", "transform", action, "t"]).is_ok());
        }
        assert!(Cli::try_parse_from(["ledge", "transform", "list", "--format", "json"]).is_ok());
    }

    #[test]
    fn consume_params_need_a_filter() {
        let cli = Cli::try_parse_from([
            "ledge",
            "consume",
            "orders",
            "--filter",
            "high-value",
            "--param",
            "threshold=5",
        ])
        .unwrap();
        let Command::Consume(consume) = cli.command else {
            panic!("not a consume");
        };
        assert_eq!(consume.filter.as_deref(), Some("high-value"));
        assert_eq!(consume.params, vec![("threshold".into(), "5".into())]);
        assert!(Cli::try_parse_from(["ledge", "consume", "orders", "--param", "a=1"]).is_err());
    }

    // Goal: `--kind` is clap's face of the one `PluginKind`: the same names, and every kind
    // reachable (a kind added to ledge-protocol fails here until the CLI offers it).
    #[test]
    fn kinds_map_to_the_sdk_kinds() {
        for kind in KindArg::value_variants() {
            let name = kind.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(PluginKind::from(*kind).as_str(), name);
        }
        let offered: Vec<PluginKind> = KindArg::value_variants()
            .iter()
            .map(|kind| PluginKind::from(*kind))
            .collect();
        for kind in PluginKind::ALL {
            assert!(offered.contains(&kind), "--kind does not offer {kind}");
        }
        let policies: Vec<OnError> = OnErrorArg::value_variants()
            .iter()
            .map(|policy| OnError::from(*policy))
            .collect();
        for policy in OnError::ALL {
            assert!(
                policies.contains(&policy),
                "--on-error does not offer {policy}"
            );
            let name = OnErrorArg::value_variants()
                .iter()
                .find(|arg| OnError::from(**arg) == policy)
                .and_then(|arg| arg.to_possible_value())
                .unwrap();
            assert_eq!(name.get_name(), policy.as_str());
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    // Goal: `ledge table get NAME KEY` keeps the key apart from the global `--key` (a TLS
    // key file), and `table scan` takes a prefix, a limit and JSON.
    #[test]
    fn table_commands_parse() {
        let cli = Cli::try_parse_from(["ledge", "table", "get", "counts", "3"]).unwrap();
        let Command::Table {
            command: TableCommand::Get(get),
        } = cli.command
        else {
            panic!("not table get")
        };
        assert_eq!((get.name.as_str(), get.group_key.as_str()), ("counts", "3"));
        let cli = Cli::try_parse_from([
            "ledge", "table", "scan", "counts", "--prefix", "4", "--limit", "5", "--format", "json",
        ])
        .unwrap();
        let Command::Table {
            command: TableCommand::Scan(scan),
        } = cli.command
        else {
            panic!("not table scan")
        };
        assert_eq!((scan.prefix.as_str(), scan.limit), ("4", 5));
        assert_eq!(scan.format, Format::Json);
    }

    #[test]
    fn alter_needs_a_change_and_ca_conflicts_with_insecure() {
        assert!(Cli::try_parse_from(["ledge", "topic", "alter", "t"]).is_err());
        assert!(
            Cli::try_parse_from(["ledge", "topic", "alter", "t", "--delete-config", "a.b"]).is_ok()
        );
        assert!(Cli::try_parse_from(["ledge", "topic", "alter", "t", "--partitions", "4"]).is_ok());
        assert!(
            Cli::try_parse_from(["ledge", "topic", "alter", "t", "--partitions", "0"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "ledge",
                "topic",
                "alter",
                "t",
                "--replica-assignment",
                "1:2"
            ])
            .is_err(),
            "an assignment needs --partitions"
        );
        assert!(
            Cli::try_parse_from([
                "ledge",
                "topic",
                "alter",
                "t",
                "-p",
                "3",
                "--replica-assignment",
                "1:x"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["ledge", "--ca", "x.pem", "--insecure", "topic", "list"]).is_err()
        );
        // A client certificate needs its key, and the key its certificate.
        assert!(Cli::try_parse_from(["ledge", "--cert", "a.pem", "topic", "list"]).is_err());
        assert!(Cli::try_parse_from(["ledge", "topic", "list", "--key", "a.key"]).is_err());
        let cli = Cli::try_parse_from([
            "ledge", "topic", "list", "--cert", "a.pem", "--key", "a.key",
        ])
        .unwrap();
        assert_eq!(cli.cert, Some(PathBuf::from("a.pem")));
        assert_eq!(cli.key, Some(PathBuf::from("a.key")));
        // --password-stdin belongs to --user; the mechanism is one of three.
        assert!(Cli::try_parse_from(["ledge", "--password-stdin", "topic", "list"]).is_err());
        assert!(
            Cli::try_parse_from([
                "ledge",
                "--user",
                "a",
                "--sasl-mechanism",
                "MD5",
                "topic",
                "list"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from([
            "ledge",
            "topic",
            "list",
            "--user",
            "alice",
            "--password-stdin",
        ])
        .unwrap();
        assert_eq!(cli.user.as_deref(), Some("alice"));
        assert!(cli.password_stdin);
        assert_eq!(cli.sasl_mechanism, "SCRAM-SHA-512");
        assert!(
            Cli::try_parse_from(["ledge", "consume", "t", "--from-beginning", "--offset", "3"])
                .is_err()
        );
    }
}

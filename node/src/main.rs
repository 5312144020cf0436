//! `ledge-node`: the Ledge server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ledge_node::assembly;
use ledge_node::broker::Broker;
use ledge_node::clock::{Clock, SystemClock};
use ledge_node::cluster::peer::peer_clients;
use ledge_node::config::NodeConfig;
use ledge_node::config::security::{ClientListener, anonymous_access_summary};
use ledge_node::controller::peer_link::{ClusterStartError, NodeClusterLinks};
use ledge_node::kafka::listener::KafkaListener;
use ledge_node::storage::disk::descriptors;
use ledge_node::storage::disk::lock::lock_data_dir;
use ledge_node::storage::storage_id;
use ledge_node::storage::{BackendChoice, Disk, SystemDisk};
use ledge_node::transport::client_auth::ClientAuthenticator;
use ledge_node::transport::quic::{self, QuicServer};
use ledge_node::transport::tls;

/// The Ledge node: topics, partitions and durable logs over QUIC.
///
/// With no flags it runs a single node with data in ./ledge-data, listening on
/// 127.0.0.1:9092 (UDP), with a development CA generated into ./ledge-data/tls/.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Arguments {
    /// TOML config file (node settings, limits, declared topics); see configs/.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// UDP address to listen on (overrides the config file) [default: 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// TCP address of the Kafka plaintext listener, or `off` for none (Kafka over TLS only,
    /// with --kafka-tls-listen); overrides the config file and turns Kafka on
    /// [default: the --listen address, on TCP].
    #[arg(long, value_name = "ADDR|off")]
    kafka_listen: Option<ledge_node::kafka::PlaintextListen>,
    /// TCP address of the Kafka TLS listener (overrides the config file; turns the Kafka
    /// listener on); it presents the node's QUIC certificate [default: no TLS listener].
    #[arg(long, value_name = "ADDR")]
    kafka_tls_listen: Option<SocketAddr>,
    /// TCP address of the admin HTTP listener (/metrics, /livez, /readyz, /v1/status), or
    /// `off` for none; overrides the config file [default: 127.0.0.1:9644].
    #[arg(long, value_name = "ADDR|off")]
    admin_listen: Option<ledge_node::admin::AdminListen>,
    /// TLS certificate chain, PEM (with --tls-key); default: a generated dev CA.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (with --tls-cert).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Disk backend: auto (io_uring when available), io_uring or std.
    #[arg(long, value_name = "BACKEND")]
    disk_backend: Option<BackendChoice>,
    /// Log line format on stderr: text or json, one object per line (overrides the config
    /// file's logging.format) [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<ledge_node::logging::LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write a local test cluster: a config per node (DIR/node-<id>.toml), a cluster CA
    /// (DIR/tls/ca.pem) and a certificate per node; then start each node with
    /// `ledge-node --config DIR/node-<id>.toml`.
    ClusterInit {
        /// Number of nodes (ids 1..=N).
        #[arg(long, value_name = "N")]
        nodes: u32,
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Node N listens on UDP 127.0.0.1:<P+N>.
        #[arg(long, value_name = "P", default_value_t = ledge_node::cluster::init::BASE_PORT_DEFAULT)]
        base_port: u16,
        /// Replace the config and TLS files of a cluster already in DIR (data is kept).
        #[arg(long)]
        force: bool,
    },
    /// Client certificates signed by the node's development CA.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Copy a snapshot written by `ledge admin snapshot` into a new data directory (offline;
    /// then start a node on it). Refused, with nothing written, when the snapshot has no
    /// manifest or a damaged one, or DIR exists and is not empty.
    Restore {
        /// The snapshot directory.
        #[arg(long, value_name = "SNAPSHOT")]
        from: PathBuf,
        /// The new data directory (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Check a config file as the node would read it at start (and on SIGHUP): parse it,
    /// check its sections agree and its module files can be read; print a summary, exit
    /// non-zero with the error otherwise. Nothing is bound or written.
    CheckConfig {
        /// The TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(clap::Subcommand, Debug)]
enum CertCommand {
    /// Sign OUT/NAME.pem and OUT/NAME.key (mode 0600) with the development CA in
    /// DIR/tls/ (subject CN=NAME, for client authentication: principal User:NAME under the
    /// default [security] principal_mapping_rules). Existing files are never overwritten.
    Issue {
        /// The node's data directory, holding tls/ca.pem and tls/ca.key.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The client's name (letters, digits, '.', '_', '-', '@').
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Directory to write NAME.pem and NAME.key into (created if missing).
        #[arg(long, value_name = "OUTDIR")]
        out: PathBuf,
        /// Validity in days from today (UTC), 1..=3650.
        #[arg(long, value_name = "N", default_value_t = ledge_node::transport::issue::CLIENT_CERTIFICATE_DAYS_DEFAULT)]
        days: u32,
    },
}

fn main() -> std::process::ExitCode {
    let mut arguments = Arguments::parse();
    // The flag, else the config file's `[logging] format`, else text.
    let log_format = arguments
        .log_format
        .or_else(|| {
            arguments
                .config
                .as_deref()
                .and_then(ledge_node::logging::format_in_config_file)
        })
        .unwrap_or_default();
    ledge_node::logging::init(log_format);
    if let Some(Command::Cert(CertCommand::Issue {
        data_dir,
        name,
        out,
        days,
    })) = &arguments.command
    {
        return match issue_certificate(data_dir, name, out, *days) {
            Ok(issued) => {
                println!(
                    "wrote {} and {} (principal User:{name} under the default [security] principal_mapping_rules)",
                    issued.certificate.display(),
                    issued.key.display()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Restore { from, data_dir }) = &arguments.command {
        return match ledge_node::storage::snapshot::restore(from, data_dir) {
            Ok(manifest) => {
                println!(
                    "restored the snapshot of node {} ({} partitions) into {}",
                    manifest.node_id,
                    manifest.partitions.len(),
                    data_dir.display()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::CheckConfig { config }) = &arguments.command {
        return match check_config_file(config) {
            Ok(config_read) => {
                println!(
                    "{}: ok (data_dir {}, listen {}, {} topic(s), {} module(s), {} transform(s))",
                    config.display(),
                    config_read.data_dir.display(),
                    config_read.listen,
                    config_read.topics.len(),
                    config_read.modules.len(),
                    config_read.transforms.len()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::ClusterInit {
        nodes,
        dir,
        base_port,
        force,
    }) = arguments.command.take()
    {
        let options = ledge_node::cluster::init::InitOptions {
            nodes,
            dir,
            base_port,
            force,
        };
        return match ledge_node::cluster::init::init(&options) {
            Ok(report) => {
                print!("{}", report.render());
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(arguments)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(arguments: Arguments) -> anyhow::Result<()> {
    // SIGHUP reloads the config file once the node serves. The handler is installed first
    // thing: SIGHUP's default action ends the process, and a reload asked for during start-up
    // is carried out once the node is ready.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    // Readiness for systemd (`Type=notify`) when it started the node.
    let notifier = ledge_node::service::Notifier::from_env()?;
    let mut config = match &arguments.config {
        Some(path) => NodeConfig::from_file(path)?,
        None => NodeConfig::default(),
    };
    check_declarations(&config)?;
    // What the file said, before flags override it: a reload compares the re-read file
    // with this to name what only a restart applies.
    let file_config = config.clone();
    if let Some(data_dir) = arguments.data_dir {
        // An empty path would lock `./lock` and then fail to create the directory: refuse
        // it as the config file does.
        anyhow::ensure!(
            !data_dir.as_os_str().is_empty(),
            "--data-dir must not be empty"
        );
        config.data_dir = data_dir;
    }
    if let Some(listen) = arguments.listen {
        if let Some(cluster) = &config.cluster {
            // Peers dial the address in cluster.peers; listening elsewhere hides the node,
            // unless that address is advertised (forwarded to it by a NAT or a proxy).
            let own = cluster.own_address();
            anyhow::ensure!(
                ledge_node::config::listen_reaches(listen, own, config.advertised_address),
                "--listen {listen} disagrees with this node's address in cluster.peers ({own}, node {}); peers dial that address (set node.advertised_address to it if something in front of the node forwards it here)",
                cluster.node_id
            );
        }
        config.listen = listen;
    }
    if arguments.tls_cert.is_some() || arguments.tls_key.is_some() {
        anyhow::ensure!(
            config.cluster.is_none(),
            "--tls-cert/--tls-key cannot be combined with a [cluster] config: the node presents its cluster certificate (cluster.cert_file) to clients and peers alike"
        );
        config.tls_cert = arguments.tls_cert;
        config.tls_key = arguments.tls_key;
    }
    if let Some(backend) = arguments.disk_backend {
        config.disk_backend = backend;
    }
    if let Some(kafka_listen) = arguments.kafka_listen {
        config.kafka.enabled = true;
        config.kafka.listen = kafka_listen;
    }
    if let Some(kafka_tls_listen) = arguments.kafka_tls_listen {
        config.kafka.enabled = true;
        config.kafka.tls_listen = Some(kafka_tls_listen);
    }
    if let Some(admin_listen) = arguments.admin_listen {
        config.admin.listen = admin_listen;
    }
    // `[admin] metrics_recording = false`: no event metrics recorded (ledge_node::metrics).
    ledge_node::metrics::set_recording(config.admin.metrics_recording);
    // Off loopback the admin listener must authenticate (`[admin] tls`) or be allowed to
    // serve anonymously.
    config
        .admin
        .check_exposure(config.security.allow_anonymous)?;
    // Anonymous clients (issue 15): with `[security] allow_anonymous` unset, only while every
    // listener is on loopback. Decided from the configured addresses, before anything is
    // bound or written.
    let listeners = client_listeners(&config);
    let anonymous = config.security.anonymous_access(&listeners)?;
    let anonymous_allowed = anonymous.allowed();
    let authorization = config.security.authorization_enabled(&anonymous);
    tracing::info!("{}", anonymous_access_summary(&anonymous, &listeners));
    // Checks that need no disk come first, so a mistake in flags or a busy port leaves no
    // data directory behind (issue 11, bug 2): TLS flags and the operator's certificate
    // files, the disk backend, the open-file limit, the listen port.
    // In a cluster, the node certificate serves clients (`ledge/1`) and peers
    // (`ledge-peer/0`, mTLS) on the one endpoint.
    let mut peers = None;
    let mut cluster_tls_loaded = None;
    // The certificate the Kafka TLS listener presents: the one QUIC presents.
    let mut kafka_certificate = None;
    // Client certificates and anonymous access, for QUIC and the Kafka TLS listener.
    let mut client_auth = None;
    let operator_tls = if let Some(cluster) = &config.cluster {
        for warning in cluster.warnings() {
            tracing::warn!("{warning}");
        }
        tls::check_private_key_file(&cluster.key_file).context("cluster.key_file")?;
        let cluster_tls = cluster.load_tls(SystemClock.wall_time_ms())?;
        tracing::info!(
            node_id = cluster.node_id,
            cluster_id = %cluster.cluster_id,
            nodes = cluster.peers.len(),
            "clients verify this node with --ca {}",
            cluster.ca_file.display()
        );
        // The controller registers its handlers once it started (after the endpoint serves);
        // until then, and for kinds nobody handles yet, peer requests are answered
        // UnknownKind.
        let service = ledge_node::cluster::peer::peer_service(
            cluster,
            &cluster_tls,
            Arc::new(ledge_node::cluster::peer::PeerHandlers::default()),
            Arc::new(SystemClock),
        )?;
        // The node's CA, for client certificates by default, is the cluster CA.
        let authenticator =
            ClientAuthenticator::load(&config.security, Some(&cluster.ca_file), anonymous.clone())?;
        let server_config = quic::client_auth_server_config(
            tls::ServerTls {
                chain: cluster_tls.chain.clone(),
                key: cluster_tls.key.clone_key(),
                dev_ca: None,
            },
            &config.transport,
            &authenticator,
            Some(&service.roots()),
        )?;
        client_auth = Some(Arc::new(authenticator));
        peers = Some(Arc::new(service));
        kafka_certificate = Some(tls::ServerTls {
            chain: cluster_tls.chain.clone(),
            key: cluster_tls.key.clone_key(),
            dev_ca: None,
        });
        cluster_tls_loaded = Some((cluster_tls, incarnation_id()?));
        Some(server_config)
    } else {
        match tls::TlsSource::from_flags(config.tls_cert.as_deref(), config.tls_key.as_deref())? {
            tls::TlsSource::Files { cert, key } => {
                let loaded = tls::load(&cert, &key, None)?;
                kafka_certificate = Some(loaded.duplicate());
                // Operator certificates: no CA of the node's own, so `client_ca` is needed
                // for client certificates.
                let authenticator =
                    ClientAuthenticator::load(&config.security, None, anonymous.clone())?;
                let server_config = quic::client_auth_server_config(
                    loaded,
                    &config.transport,
                    &authenticator,
                    None,
                )?;
                client_auth = Some(Arc::new(authenticator));
                Some(server_config)
            }
            tls::TlsSource::DevCa => None,
        }
    };
    // Module files named by the config are read after the data directory is open; a
    // missing one is reported now, before anything is written.
    check_module_files(&config)?;
    let disk = SystemDisk::detect(config.disk_backend)?;
    let controller_disk = disk.clone();
    let disk_backend = disk.backend_name();
    let open_files = descriptors::raise_open_file_limit();
    match open_files {
        Ok(limit) => {
            tracing::info!(
                soft = limit.soft,
                hard = limit.hard,
                was = limit.soft_before,
                "open-file limit (RLIMIT_NOFILE)"
            );
            descriptors::set_open_files_max(limit.soft);
        }
        Err(error) => tracing::warn!(%error, "cannot read or raise the open-file limit"),
    }
    descriptors::set_sealed_segment_files_open_max(config.sealed_segment_files_open_max);
    let socket = quic::bind_socket(config.listen, &config.transport)?;
    // The Kafka port too is checked before the data directory is touched.
    let kafka = if config.kafka.enabled {
        let address = config.kafka.listen_address(config.listen);
        Some(KafkaListener::bind(address, config.kafka.clone())?)
    } else {
        None
    };
    // So is the admin port.
    let admin = match config.admin.listen {
        ledge_node::admin::AdminListen::At(address) => Some(
            ledge_node::admin::server::AdminListener::bind(address, config.admin.clone())?,
        ),
        ledge_node::admin::AdminListen::Off => None,
    };
    // Metadata lists this node at the address it really listens on (port 0 is resolved),
    // unless clients must reach it through something in between (node.advertised_address).
    config.broker.advertised_address = match config.advertised_address {
        Some(advertised) => advertised.to_string(),
        None => socket
            .local_addr()
            .map_or_else(|_| config.listen.to_string(), |address| address.to_string()),
    };

    // The lock comes before anything else touches the data directory, and is held until
    // this function returns (the process ends): one node per data directory.
    let lock = lock_data_dir(&config.data_dir, SystemClock.wall_time_ms())?;
    let disk_backend_name = disk.backend_name();
    tracing::info!(backend = disk.backend_name(), data_dir = %config.data_dir.display(), read_only = lock.read_only, "data directory locked");
    if config.cluster.is_some() && !lock.read_only {
        // The controller log holds the cluster's SCRAM credentials: node user only.
        let narrowed = ledge_node::controller::store::restrict_controller_dir(&config.data_dir)
            .with_context(|| {
                format!(
                    "cannot restrict {} to mode 0700",
                    config.data_dir.join("controller").display()
                )
            })?;
        if narrowed {
            tracing::warn!(data_dir = %config.data_dir.display(), "the controller directory was readable by other users; narrowed to mode 0700");
        }
    }
    let server_config = match operator_tls {
        Some(server_config) => server_config,
        None => {
            let dev = tls::load_or_generate_dev(&config.data_dir)?;
            if let Some(ca) = &dev.dev_ca {
                tracing::info!(ca = %ca.display(), "clients verify this node with --ca {}", ca.display());
            }
            kafka_certificate = Some(dev.duplicate());
            let authenticator =
                ClientAuthenticator::load(&config.security, dev.dev_ca.as_deref(), anonymous)?;
            let server_config =
                quic::client_auth_server_config(dev, &config.transport, &authenticator, None)?;
            client_auth = Some(Arc::new(authenticator));
            server_config
        }
    };
    let client_auth = client_auth.context("client authentication was not set up")?;
    // With `[admin] tls = true` the admin listener presents the certificate QUIC presents.
    let admin_certificate = kafka_certificate.as_ref().map(tls::ServerTls::duplicate);
    let reset_key = quic::load_or_create_reset_key(&config.data_dir)?;
    // Refuse a partition count the open-file limit cannot hold before opening any: opens
    // failing one by one with EMFILE took partitions offline and then the node down.
    descriptors::check_partition_count(partitions_at_start(&config))?;
    let broker = Broker::open(
        disk,
        &config.data_dir,
        config.broker.clone(),
        Arc::new(SystemClock),
    )
    .await
    .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;
    // SASL users, ACLs and the decoy secret (`security.json`; in a cluster the controller's).
    let security_mode = if config.cluster.is_some() {
        ledge_node::security::store::StoreMode::Cluster
    } else {
        ledge_node::security::store::StoreMode::OneNode
    };
    let authorizer_config = ledge_node::security::acl::AuthorizerConfig {
        super_users: config
            .security
            .super_users
            .iter()
            .map(ToString::to_string)
            .collect(),
        max_acls: config.security.acls_max,
        ..ledge_node::security::acl::AuthorizerConfig::default()
    };
    let security = match ledge_node::security::store::SecurityStore::open(
        &config.data_dir,
        security_mode,
        lock.read_only,
        authorizer_config.clone(),
        ledge_node::security::records::SecurityLimits {
            users_max: config.security.users_max,
            acls_max: config.security.acls_max,
            ..ledge_node::security::records::SecurityLimits::default()
        },
        random_decoy_secret()?,
    ) {
        Ok(store) => store,
        Err(error) => {
            broker.close().await;
            return Err(error.into());
        }
    };
    let security = Arc::new(security);
    broker.set_security_store(Arc::clone(&security));
    // The audit log (`<data-dir>/audit.log`, issue 15): authentication failures, denials and
    // administrative changes, rate limited.
    match ledge_node::security::audit::AuditLog::start(
        &config.security.audit,
        &config.data_dir,
        lock.read_only,
        broker.clock(),
    ) {
        Ok(audit) => broker.set_audit_log(audit),
        Err(error) => {
            broker.close().await;
            return Err(error.into());
        }
    }
    if authorization {
        broker.enforce_authorization(authorizer_config);
    }
    tracing::info!(
        authorization,
        "requests are {} against the ACLs",
        if authorization {
            "checked"
        } else {
            "not checked"
        }
    );
    for (topic, partition, reason) in broker.offline_partitions() {
        tracing::error!(topic, partition, reason, "partition offline");
    }
    if lock.read_only {
        // Reads only (issue 11, data item 9): declared topics, modules and transforms
        // would all need writes, and so would retention.
        tracing::warn!(data_dir = %config.data_dir.display(), "read-only filesystem: serving reads only; declared topics, modules and transforms are not reconciled, transforms and retention do not run, produce is refused");
    } else {
        // Modules first: a declared topic's partitioner.module or produce.filter.module must name
        // an uploaded module; transforms last: they read declared topics.
        if let Err(error) = upload_declared_modules(&broker, &config).await {
            broker.close().await;
            return Err(error);
        }
        if let Err(error) = broker.reconcile(&config.topics).await {
            broker.close().await;
            return Err(error.into());
        }
        if let Err(error) = deploy_declared_transforms(&broker, &config).await {
            broker.close().await;
            return Err(error);
        }
    }
    // The node's services are built by `ledge_node::assembly`, which the simulator runs too.
    // In a cluster, producer ids come from the controller's blocks (`broker/registry/
    // producer_blocks.rs`) once the cluster source is set below.
    let broker = Arc::new(broker);
    assembly::start_broker_drivers(&broker, lock.read_only, config.cluster.is_some()).await;
    // Client quotas and per-principal connection limits (issue 15), one for both listeners.
    let quotas = Arc::new(ledge_node::security::quota::ClientQuotaManager::new(
        config.quota,
        Some(Arc::clone(&security)),
        config.security.connections_per_principal_max,
        config.security.super_users.iter().map(ToString::to_string),
    ));
    let mut server = QuicServer::new(socket, server_config, config.transport.clone(), reset_key)?
        .with_client_auth(Arc::clone(&client_auth))
        .with_quotas(Arc::clone(&quotas));
    // SASL on QUIC (issue 15): the `[security]` mechanisms, credentials from the store; an
    // empty list turns it off.
    if !config.security.sasl_mechanisms.is_empty() {
        let credentials: Arc<dyn ledge_node::security::credentials::CredentialLookup> =
            Arc::clone(&security) as _;
        server = server.with_sasl(Arc::new(
            ledge_node::security::sasl::SaslServer::new(
                config
                    .security
                    .sasl_mechanisms
                    .iter()
                    .map(|mechanism| {
                        ledge_node::security::sasl::mechanism_from_name(mechanism.name())
                            .with_context(|| {
                                format!("SASL mechanism {} is not served", mechanism.name())
                            })
                    })
                    .collect::<anyhow::Result<_>>()?,
                credentials,
            )
            .context("setting up SASL on QUIC")?,
        ));
    }
    let endpoint = server.endpoint();
    let peer_handlers = peers.as_ref().map(|peers| Arc::clone(peers.handlers()));
    if let Some(peers) = peers {
        server = server.with_peers(peers);
    }
    let address = server.local_addr().context("reading the bound address")?;
    // For the start-up summary line.
    let mut listeners = vec![format!("quic {address}")];
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // What this node registers with the controller, so the other nodes' Metadata answers
    // send Kafka clients here (none of either: Kafka is off on this node).
    let mut kafka_listeners = ledge_node::controller::records::KafkaListeners::default();
    let kafka_serving = match kafka {
        Some(mut kafka) => {
            let address = kafka
                .local_addr()
                .transpose()
                .context("reading the Kafka listener's address")?;
            let tls_address = kafka
                .local_tls_addr()
                .transpose()
                .context("reading the Kafka TLS listener's address")?;
            // Listening on every address (0.0.0.0): clients are given the host QUIC
            // advertises, on the Kafka port.
            let quic_host = config
                .broker
                .advertised_address
                .rsplit_once(':')
                .map_or(config.broker.advertised_address.as_str(), |(host, _)| host)
                .to_owned();
            if let Some(address) = address
                && config.kafka.advertised_listen.is_none()
                && address.ip().is_unspecified()
            {
                kafka.advertise(format!("{quic_host}:{}", address.port()));
            }
            if let Some(tls_address) = tls_address {
                if config.kafka.advertised_tls_listen.is_none() && tls_address.ip().is_unspecified()
                {
                    kafka.advertise_tls(format!("{quic_host}:{}", tls_address.port()));
                }
                if let Some(certificate) = kafka_certificate.take() {
                    kafka.present_with_client_auth(certificate, Some(&client_auth))?;
                }
            }
            // SASL (issue 15): the `[security]` mechanisms, credentials from the store.
            let sasl_settings = ledge_node::kafka::sasl::KafkaSaslSettings {
                mechanisms: config
                    .security
                    .sasl_mechanisms
                    .iter()
                    .map(|mechanism| {
                        ledge_node::kafka::sasl::mechanism_from_name(mechanism.name()).with_context(
                            || format!("SASL mechanism {} is not served", mechanism.name()),
                        )
                    })
                    .collect::<anyhow::Result<_>>()?,
                allow_anonymous: anonymous_allowed,
            };
            let credentials: Arc<dyn ledge_node::security::credentials::CredentialLookup> =
                Arc::clone(&security) as _;
            kafka.sasl(Arc::new(
                ledge_node::kafka::sasl::KafkaSasl::new(sasl_settings, credentials)
                    .context("setting up SASL on the Kafka listener")?,
            ));
            kafka.quotas(Arc::clone(&quotas));
            if let Err(error) = kafka.check() {
                let _ = stop.send(true);
                broker.close().await;
                return Err(error.into());
            }
            kafka_listeners.plaintext = kafka.advertised();
            kafka_listeners.tls = kafka.advertised_tls();
            // Before the readiness line, so whoever waits on that has read these too.
            if let Some(address) = address {
                tracing::info!(%address, advertised = ?kafka.advertised(), "kafka listener up");
                println!("ledge-node kafka listening on {address}");
                listeners.push(format!("kafka {address}"));
            }
            if let Some(tls_address) = tls_address {
                tracing::info!(address = %tls_address, advertised = ?kafka.advertised_tls(), "kafka TLS listener up");
                println!("ledge-node kafka tls listening on {tls_address}");
                listeners.push(format!("kafka-tls {tls_address}"));
            }
            Some(tokio::spawn(
                kafka
                    .with_client_auth(Arc::clone(&client_auth))
                    .serve(Arc::clone(&broker), stopped.clone()),
            ))
        }
        None => None,
    };
    let admin_serving = match admin {
        Some(mut admin) => {
            // TLS and authentication (`[admin] tls`, `authentication`): the node's
            // certificate and client CA, its SCRAM users and ACLs, its audit log.
            let admin_setup = (|| {
                if let Some(certificate) = admin_certificate {
                    admin.present(certificate, Some(Arc::clone(&client_auth)))?;
                }
                let access_broker = Arc::clone(&broker);
                admin.guard(ledge_node::admin::auth::AdminGuard::new(
                    Arc::clone(&security) as _,
                    Arc::new(
                        move |identity: &ledge_node::security::identity::ClientIdentity| {
                            access_broker.access(identity)
                        },
                    ),
                    broker.audit_log().cloned(),
                ));
                admin.check()
            })();
            if let Err(error) = admin_setup {
                let _ = stop.send(true);
                broker.close().await;
                return Err(error.into());
            }
            let admin_address = admin
                .local_addr()
                .context("reading the admin listener's address")?;
            let info = ledge_node::admin::view::NodeInfo {
                node_id: config.broker.node_id,
                listeners: ledge_node::admin::routes::StatusListeners {
                    quic: address.to_string(),
                    kafka: kafka_listeners.plaintext.clone(),
                    kafka_tls: kafka_listeners.tls.clone(),
                    admin: Some(admin_address.to_string()),
                },
                data_dir: config.data_dir.clone(),
                disk_backend: disk_backend_name.to_string(),
            };
            let view: Arc<dyn ledge_node::admin::NodeView> =
                Arc::new(ledge_node::admin::view::BrokerView::new(
                    Arc::clone(&broker),
                    info,
                    config.admin.metrics_label_sets_max,
                ));
            let scheme = admin.scheme();
            tracing::info!(address = %admin_address, scheme, authentication = config.admin.authentication.as_str(), "admin listener up (console /, /metrics, /livez, /readyz, /v1/status)");
            listeners.push(format!("admin {scheme}://{admin_address}/"));
            println!("ledge-node admin listening on {admin_address}");
            Some(tokio::spawn(admin.serve(
                view,
                Arc::new(SystemClock),
                stopped.clone(),
            )))
        }
        None => None,
    };
    let serving = tokio::spawn(server.serve(Arc::clone(&broker), stopped));
    // The controller quorum and this node's registration run over the endpoint that now
    // serves; forming the quorum waits for the other voters in the background.
    let node_cluster = match (&config.cluster, &cluster_tls_loaded, &peer_handlers) {
        (Some(cluster), Some((cluster_tls, incarnation)), Some(handlers)) => {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            // Before anything else is stored for the cluster: the id vouches for this
            // directory.
            let links = match storage_id::load_or_create(&controller_disk, &config.data_dir)
                .await
                .map_err(ClusterStartError::from)
                .and_then(|storage_id| {
                    let clients = peer_clients(cluster, cluster_tls, &endpoint, &clock)?;
                    Ok(NodeClusterLinks {
                        cluster,
                        clients,
                        storage_id,
                        handlers,
                        clock,
                        incarnation_id: *incarnation,
                        admin_limits: ledge_node::controller::admin::AdminLimits {
                            topic_partitions_max: config.broker.topic_partitions_max,
                        },
                        election_timeout: None,
                        kafka_listeners: Some(kafka_listeners.clone()),
                    })
                }) {
                Ok(links) => links,
                Err(error) => {
                    let _ = stop.send(true);
                    let _ = serving.await;
                    broker.close().await;
                    return Err(error).context("cannot start the controller");
                }
            };
            let started = assembly::start_cluster_services(
                &broker,
                links,
                controller_disk,
                &config.data_dir,
                !lock.read_only,
            )
            .await;
            let node_cluster = match started {
                Ok(node_cluster) => node_cluster,
                Err(error) => {
                    let _ = stop.send(true);
                    let _ = serving.await;
                    broker.close().await;
                    return Err(error.into());
                }
            };
            Some(node_cluster)
        }
        _ => None,
    };
    let (topics, partitions) = broker.topic_and_partition_counts();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listeners = %listeners.join(", "),
        data_dir = %config.data_dir.display(),
        disk_backend,
        topics,
        partitions,
        "ledge-node started"
    );
    // The readiness line: printed only once the listener is up (the e2e harness waits on it).
    println!("ledge-node listening on {address}");
    tracing::info!(address = %address, "ready: serving clients");
    let status = format!("serving on {address}");
    if let Some(notifier) = &notifier {
        notifier.ready(&status);
    }
    loop {
        tokio::select! {
            () = wait_for_signal() => break,
            _ = hangup.recv() => {
                if let Some(notifier) = &notifier {
                    notifier.reloading(ledge_node::service::monotonic_us());
                }
                reload(arguments.config.as_deref(), &file_config, &*broker, lock.read_only).await;
                if let Some(notifier) = &notifier {
                    notifier.ready(&status);
                }
            }
        }
    }
    if let Some(notifier) = &notifier {
        notifier.stopping();
    }
    if let Some(node_cluster) = &node_cluster {
        // Leaderships move to other in-sync replicas while this node still serves.
        node_cluster.controlled_shutdown().await;
    }
    tracing::info!("shutting down: finishing requests in flight, then syncing logs");
    if let Some(node_cluster) = node_cluster {
        node_cluster.shutdown().await;
    }
    let _ = stop.send(true);
    let _ = serving.await;
    if let Some(kafka_serving) = kafka_serving {
        let _ = kafka_serving.await;
    }
    if let Some(admin_serving) = admin_serving {
        let _ = admin_serving.await;
    }
    broker.close().await;
    tracing::info!("shutdown complete");
    drop(lock);
    Ok(())
}

/// Sections that cannot go together, checked before anything is bound or written (at
/// start, by `check-config` and on reload).
fn check_declarations(config: &NodeConfig) -> anyhow::Result<()> {
    // A cluster's topics are the controller's, made with CreateTopics against any node, and
    // a node reconciling its own copy at start would disagree with the others.
    anyhow::ensure!(
        config.cluster.is_none() || config.topics.is_empty(),
        "[[topic]] sections cannot be used with [cluster]: a cluster's topics are the controller's; create them with `ledge topic create` against any node ({} declared)",
        config.topics.len()
    );
    // Likewise modules and transforms: the controller's in a cluster (`ledge module upload`,
    // `ledge transform deploy` against any node).
    anyhow::ensure!(
        config.cluster.is_none() || (config.modules.is_empty() && config.transforms.is_empty()),
        "[[module]] and [[transform]] sections cannot be used with [cluster]: a cluster's modules and transforms are the controller's; use `ledge module upload` and `ledge transform deploy` against any node ({} module(s), {} transform(s) declared)",
        config.modules.len(),
        config.transforms.len()
    );
    Ok(())
}

/// Every module file the config names can be opened (they are read when applied).
fn check_module_files(config: &NodeConfig) -> anyhow::Result<()> {
    for (path, origin) in config
        .modules
        .iter()
        .map(|module| (&module.path, &module.origin))
        .chain(
            config
                .transforms
                .iter()
                .map(|transform| (&transform.path, &transform.origin)),
        )
    {
        std::fs::File::open(path)
            .with_context(|| format!("{origin}: cannot read module file {}", path.display()))?;
    }
    Ok(())
}

/// `ledge-node check-config`: what start-up checks of the file before touching anything.
fn check_config_file(path: &std::path::Path) -> anyhow::Result<NodeConfig> {
    let config = NodeConfig::from_file(path)?;
    check_declarations(&config)?;
    check_module_files(&config)?;
    Ok(config)
}

/// `SIGHUP`: re-reads the config file and applies its declared modules, topics and
/// transforms as at start (new topics created, partitions added, changed configs and
/// transforms deployed); settings only a restart applies are logged as such. A file that
/// does not parse or check is one error line and changes nothing.
async fn reload<D: Disk>(
    path: Option<&std::path::Path>,
    running: &NodeConfig,
    broker: &Broker<D>,
    read_only: bool,
) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: nothing to reload, the node was started without --config");
        return;
    };
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config file");
    let reloaded = match check_config_file(path) {
        Ok(reloaded) => reloaded,
        Err(error) => {
            tracing::error!("config reload failed, nothing changed: {error:#}");
            return;
        }
    };
    for setting in ledge_node::service::restart_needed(running, &reloaded) {
        tracing::warn!(
            config = %path.display(),
            "{setting} changed: takes effect at the next restart, not on reload"
        );
    }
    if read_only {
        tracing::warn!(
            "read-only data directory: declared topics, modules and transforms are not reconciled on reload"
        );
        return;
    }
    // The order of start-up: modules, then topics, then transforms (which read topics).
    let applied = async {
        upload_declared_modules(broker, &reloaded).await?;
        broker.reconcile(&reloaded.topics).await?;
        deploy_declared_transforms(broker, &reloaded).await
    }
    .await;
    match applied {
        Ok(()) => tracing::info!(
            topics = reloaded.topics.len(),
            modules = reloaded.modules.len(),
            transforms = reloaded.transforms.len(),
            "config reloaded"
        ),
        Err(error) => {
            tracing::error!(
                "config reload stopped at an error (declarations before it were applied): {error:#}"
            );
        }
    }
}

/// `ledge-node cert issue`.
fn issue_certificate(
    data_dir: &std::path::Path,
    name: &str,
    out: &std::path::Path,
    days: u32,
) -> anyhow::Result<ledge_node::transport::issue::Issued> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let now = SystemClock.wall_time_ms().div_euclid(1000);
    Ok(ledge_node::transport::issue::issue_client_certificate(
        data_dir, name, out, days, now,
    )?)
}

/// The listeners the node will serve clients on, as configured (before binding: port 0 is
/// still 0, which does not change whether an address is loopback).
fn client_listeners(config: &NodeConfig) -> Vec<ClientListener> {
    let required = config.security.client_auth == ledge_node::config::ClientAuth::Required;
    let mut listeners = vec![ClientListener {
        kind: "QUIC",
        address: config.listen,
        certificate_required: required,
    }];
    if config.kafka.enabled {
        if let Some(address) = config.kafka.listen_address(config.listen) {
            listeners.push(ClientListener {
                kind: "Kafka plaintext",
                address,
                certificate_required: false,
            });
        }
        if let Some(address) = config.kafka.tls_listen {
            listeners.push(ClientListener {
                kind: "Kafka TLS",
                address,
                certificate_required: required,
            });
        }
    }
    listeners
}

/// A fresh incarnation id for this start: a restart registers as a new incarnation and gets
/// a new node epoch (random, so two starts never share one).
fn incarnation_id() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("cannot draw an incarnation id: no system randomness"))?;
    Ok(u64::from_le_bytes(bytes))
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Partitions the node will hold once started: those with a directory in `<data-dir>/logs`,
/// plus those the config declares beyond them.
fn partitions_at_start(config: &NodeConfig) -> u64 {
    let mut existing: std::collections::BTreeMap<String, u64> = Default::default();
    if let Ok(entries) = std::fs::read_dir(config.data_dir.join("logs")) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(key) =
                ledge_node::storage::PartitionKey::from_directory_name(&name.to_string_lossy())
            {
                *existing.entry(key.topic).or_default() += 1;
            }
        }
    }
    let declared_beyond: u64 = config
        .topics
        .iter()
        .map(|topic| {
            let have = existing.get(&topic.name).copied().unwrap_or(0);
            u64::from(topic.partitions).saturating_sub(have)
        })
        .sum();
    existing.values().sum::<u64>() + declared_beyond
}

fn read_module_file(path: &std::path::Path, origin: &str) -> anyhow::Result<bytes::Bytes> {
    std::fs::read(path)
        .map(bytes::Bytes::from)
        .with_context(|| format!("{origin}: cannot read module file {}", path.display()))
}

/// Uploads the config file's `[[module]]`s (unchanged ones are a no-op).
async fn upload_declared_modules<D: Disk>(
    broker: &Broker<D>,
    config: &NodeConfig,
) -> anyhow::Result<()> {
    for module in &config.modules {
        let bytes = read_module_file(&module.path, &module.origin)?;
        broker
            .plugins()
            .upload_named_module(&module.name, module.kind, bytes, module.params.clone())
            .await
            .map_err(|error| anyhow::anyhow!("{}: {error}", module.origin))?;
    }
    Ok(())
}

/// Deploys the config file's `[[transform]]`s (unchanged ones are left running as they are).
async fn deploy_declared_transforms<D: Disk>(
    broker: &Broker<D>,
    config: &NodeConfig,
) -> anyhow::Result<()> {
    let mut declared = Vec::new();
    for transform in &config.transforms {
        declared.push((
            ledge_node::broker::transforms::DeclaredTransform {
                name: transform.name.clone(),
                kind: transform.kind,
                module: read_module_file(&transform.path, &transform.origin)?,
                input: transform.input.clone(),
                output: transform.output.clone(),
                params: transform.params.clone(),
                on_error: transform.on_error,
                dead_letter_topic: transform.dead_letter_topic.clone(),
                join: transform.join.clone(),
                window: transform.window.clone(),
            },
            transform.origin.clone(),
        ));
    }
    broker.transforms().reconcile(declared).await?;
    Ok(())
}

/// A fresh decoy secret for a new `security.json`, from the system's secure generator.
fn random_decoy_secret() -> anyhow::Result<[u8; ledge_node::security::scram::DECOY_SECRET_BYTES]> {
    let mut secret = [0u8; ledge_node::security::scram::DECOY_SECRET_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(secret)
}

//! `ledge-node`: the Ledge server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ledge_node::broker::Broker;
use ledge_node::clock::SystemClock;
use ledge_node::config::NodeConfig;
use ledge_node::storage::{BackendChoice, Disk, SystemDisk};
use ledge_node::transport::quic::QuicServer;
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
    /// TLS certificate chain, PEM (with --tls-key); default: a generated dev CA.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (with --tls-cert).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Disk backend: auto (io_uring when available), io_uring or std.
    #[arg(long, value_name = "BACKEND")]
    disk_backend: Option<BackendChoice>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments = Arguments::parse();
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
    let mut config = match &arguments.config {
        Some(path) => NodeConfig::from_file(path)?,
        None => NodeConfig::default(),
    };
    if let Some(data_dir) = arguments.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(listen) = arguments.listen {
        config.listen = listen;
    }
    if arguments.tls_cert.is_some() || arguments.tls_key.is_some() {
        config.tls_cert = arguments.tls_cert;
        config.tls_key = arguments.tls_key;
    }
    if let Some(backend) = arguments.disk_backend {
        config.disk_backend = backend;
    }
    let disk = SystemDisk::detect(config.disk_backend)?;
    tracing::info!(backend = disk.backend_name(), data_dir = %config.data_dir.display(), "disk backend");
    let broker = Broker::open(
        disk,
        &config.data_dir,
        config.broker.clone(),
        Arc::new(SystemClock),
    )
    .await
    .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;
    for (topic, partition, reason) in broker.offline_partitions() {
        tracing::error!(topic, partition, reason, "partition offline");
    }
    if let Err(error) = broker.reconcile(&config.topics).await {
        broker.close().await;
        return Err(error.into());
    }
    if let Err(error) = reconcile_wasm(&broker, &config).await {
        broker.close().await;
        return Err(error);
    }
    let broker = Arc::new(broker);
    broker.start_transforms().await;
    tokio::spawn(Arc::clone(&broker).run_group_timer());
    tokio::spawn(Arc::clone(&broker).run_retention());
    tokio::spawn(Arc::clone(&broker).run_verifier());
    let tls = tls::load_or_generate(
        &config.data_dir,
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
    )?;
    if let Some(ca) = &tls.dev_ca {
        tracing::info!(ca = %ca.display(), "clients verify this node with --ca {}", ca.display());
    }
    let reset_key = ledge_node::transport::quic::load_or_create_reset_key(&config.data_dir)
        .with_context(|| {
            format!(
                "cannot create the QUIC reset key in {}",
                config.data_dir.display()
            )
        })?;
    let server = QuicServer::bind(config.listen, tls, config.transport.clone(), reset_key)?;
    let address = server.local_addr().context("reading the bound address")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(server.serve(Arc::clone(&broker), stopped));
    // The readiness line: printed only once the listener is up (the e2e harness waits on it).
    println!("ledge-node listening on {address}");
    wait_for_signal().await;
    tracing::info!("shutting down: finishing requests in flight, then syncing logs");
    let _ = stop.send(true);
    let _ = serving.await;
    broker.close().await;
    tracing::info!("shutdown complete");
    Ok(())
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

/// Uploads the config file's `[[module]]`s and deploys its `[[transform]]`s (unchanged ones
/// are left running as they are).
async fn reconcile_wasm<D: Disk>(broker: &Broker<D>, config: &NodeConfig) -> anyhow::Result<()> {
    let read = |path: &std::path::Path, origin: &str| {
        std::fs::read(path)
            .map(bytes::Bytes::from)
            .with_context(|| format!("{origin}: cannot read module file {}", path.display()))
    };
    for module in &config.modules {
        let bytes = read(&module.path, &module.origin)?;
        broker
            .upload_named_module(&module.name, module.kind, bytes, module.params.clone())
            .await
            .map_err(|(_, message)| anyhow::anyhow!("{}: {message}", module.origin))?;
    }
    let mut declared = Vec::new();
    for transform in &config.transforms {
        declared.push((
            ledge_node::broker::transforms::DeclaredTransform {
                name: transform.name.clone(),
                kind: transform.kind,
                module: read(&transform.path, &transform.origin)?,
                input: transform.input.clone(),
                output: transform.output.clone(),
                params: transform.params.clone(),
                on_error: transform.on_error,
                dead_letter_topic: transform.dead_letter_topic.clone(),
            },
            transform.origin.clone(),
        ));
    }
    broker.reconcile_transforms(declared).await?;
    Ok(())
}

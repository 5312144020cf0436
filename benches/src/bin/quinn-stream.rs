//! `quinn-stream`: one bare QUIC stream's throughput on loopback, with quinn alone.
//!
//! The limit the node's QUIC path is measured against (issue 7, item 2): no Ledge code, no
//! framing, no disk; one connection, one bidirectional stream, `--bytes` bytes each way in
//! `--chunk-bytes` chunks.
//!
//! - `up` (client → server, the direction of a produce): the client writes the bytes and
//!   finishes the stream; the server reads them all and answers one byte. Timed from the first
//!   write to that byte.
//! - `down` (server → client, the direction of a fetch): the client asks with an 8-byte
//!   length; the server writes that many bytes and finishes. Timed from the ask to the end of
//!   the stream.
//!
//! Set up as the node and the SDK set themselves up: rustls with ring, TLS 1.3, 4 MiB UDP
//! socket buffers on both sides (`node/src/transport/quic.rs`, `client/src/connection.rs`),
//! GSO and GRO on (quinn's default, enabled explicitly here), the node's stream and connection
//! windows on the server and, by default, the SDK's transport settings (quinn's defaults) on
//! the client. `--client-windows node` gives the client the node's windows too, and
//! `--max-udp-payload` raises quinn's 1452-byte MTU ceiling (loopback's MTU is 65,536), to
//! show what tuning could buy. Each side runs its own two-worker tokio runtime, as the node
//! and `ledge-bench` do in their own processes. The CPU time of both ends together is
//! reported per MB moved, to set against the node's and `ledge-bench`'s.
//!
//! ```text
//! target/release/quinn-stream --bytes 2147483648 --rounds 3
//! target/release/quinn-stream --json
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use ledge_node::clock::{Clock, SystemClock};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

/// ALPN of this benchmark (not Ledge's, so nothing mistakes one for the other).
const ALPN: &[u8] = b"quinn-stream";
/// The node's UDP socket buffer size (`TransportLimits::udp_buffer_bytes`) and the SDK's
/// (`SOCKET_BUFFER_BYTES_DEFAULT`).
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// The node's per-stream receive window (`node/src/transport/quic.rs`).
const NODE_STREAM_RECEIVE_WINDOW: u32 = 8 * 1024 * 1024;
/// The node's connection receive window and send window.
const NODE_CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// One QUIC stream's throughput on loopback, quinn alone.
#[derive(Debug, Parser)]
#[command(name = "quinn-stream", version, about)]
struct Cli {
    /// Bytes to move in each direction per round.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Bytes per `write_chunk` call (like a 1 MiB record batch).
    #[arg(long, default_value_t = 1 << 20)]
    chunk_bytes: usize,
    /// Rounds; each round measures `up` then `down` on a fresh connection. The best round
    /// is reported beside the median.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Transport windows on the client: `sdk` (quinn's defaults, as `ledge-client` uses) or
    /// `node` (the node's 8 MiB stream and 32 MiB connection windows).
    #[arg(long, value_enum, default_value_t = ClientWindows::Sdk)]
    client_windows: ClientWindows,
    /// Largest UDP payload both sides may use (MTU discovery's upper bound and the endpoint's
    /// limit); without it quinn's defaults hold (1452-byte ceiling), as in the node.
    #[arg(long)]
    max_udp_payload: Option<u16>,
    /// Generic segmentation offload (quinn's default is on).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    gso: bool,
    /// One JSON object per direction instead of the text lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientWindows {
    Sdk,
    Node,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.chunk_bytes == 0 || cli.bytes == 0 || cli.rounds == 0 {
        bail!("--bytes, --chunk-bytes and --rounds must be at least 1");
    }
    let server_runtime = runtime("quinn-stream-server")?;
    let client_runtime = runtime("quinn-stream-client")?;

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .context("generating a certificate")?;
    let certificate = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));

    let server = {
        let _guard = server_runtime.enter();
        server_endpoint(&cli, certificate.clone(), key)?
    };
    let server_addr = server.local_addr()?;
    let (gso_segments, gro_segments) = offload_segments()?;
    server_runtime.spawn(serve(server.clone()));

    let mut up = Vec::new();
    let mut down = Vec::new();
    // CPU time of both endpoints (this whole process) per MB moved, in µs.
    let mut cpu_up = Vec::new();
    let mut cpu_down = Vec::new();
    let chunk = Bytes::from(vec![0x5a; cli.chunk_bytes]);
    for _ in 0..cli.rounds {
        let (seconds_up, seconds_down) = client_runtime.block_on(async {
            let client = client_endpoint(&cli, certificate.clone())?;
            let connection = client
                .connect(server_addr, "localhost")?
                .await
                .context("connecting")?;
            let cpu_start = process_cpu_seconds();
            let seconds_up = upload(&connection, cli.bytes, &chunk).await?;
            let cpu_middle = process_cpu_seconds();
            let seconds_down = download(&connection, cli.bytes).await?;
            let cpu_end = process_cpu_seconds();
            let megabytes = cli.bytes as f64 / 1e6;
            if let (Some(start), Some(middle), Some(end)) = (cpu_start, cpu_middle, cpu_end) {
                cpu_up.push((middle - start) * 1e6 / megabytes);
                cpu_down.push((end - middle) * 1e6 / megabytes);
            }
            connection.close(0u32.into(), b"done");
            client.wait_idle().await;
            anyhow::Ok((seconds_up, seconds_down))
        })?;
        up.push(cli.bytes as f64 / 1e6 / seconds_up);
        down.push(cli.bytes as f64 / 1e6 / seconds_down);
    }
    server.close(0u32.into(), b"done");

    for (direction, rates, cpu) in [
        ("up", &mut up, &mut cpu_up),
        ("down", &mut down, &mut cpu_down),
    ] {
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let best = rates[rates.len() - 1];
        cpu.sort_by(f64::total_cmp);
        let cpu_median = cpu.get(cpu.len() / 2).copied();
        if cli.json {
            println!(
                "{}",
                json!({
                    "workload": "quinn-stream",
                    "direction": direction,
                    "bytes": cli.bytes,
                    "chunk_bytes": cli.chunk_bytes,
                    "rounds": cli.rounds,
                    "client_windows": format!("{:?}", cli.client_windows).to_lowercase(),
                    "max_udp_payload": cli.max_udp_payload,
                    "gso": cli.gso,
                    "gso_segments_max": gso_segments,
                    "gro_segments": gro_segments,
                    "mb_per_s_median": median,
                    "mb_per_s_best": best,
                    "mb_per_s_rounds": rates,
                    "cpu_us_per_mb_median": cpu_median,
                })
            );
        } else {
            println!(
                "{direction:>4}: median {median:.0} MB/s, best {best:.0} MB/s over {} rounds \
                 of {} bytes, {:.0} µs of CPU per MB (both ends) (GSO up to {gso_segments} \
                 segments, GRO {gro_segments})",
                cli.rounds,
                cli.bytes,
                cpu_median.unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// A two-worker runtime (what `#[tokio::main]` gives on this 2-core machine), on its own
/// threads.
fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// Client → server: returns the seconds from the first write to the server's answer.
async fn upload(connection: &quinn::Connection, bytes: u64, chunk: &Bytes) -> anyhow::Result<f64> {
    let (mut send, mut recv) = connection.open_bi().await?;
    let started = SystemClock.now();
    send.write_all(b"u").await?;
    let mut left = bytes;
    while left > 0 {
        let take = left.min(chunk.len() as u64) as usize;
        send.write_chunk(chunk.slice(..take)).await?;
        left -= take as u64;
    }
    send.finish()?;
    let answer = recv.read_to_end(16).await?;
    if answer != b"k" {
        bail!("unexpected answer to the upload: {answer:?}");
    }
    Ok(SystemClock
        .now()
        .saturating_duration_since(started)
        .as_secs_f64())
}

/// Server → client: returns the seconds from the ask to the end of the stream.
async fn download(connection: &quinn::Connection, bytes: u64) -> anyhow::Result<f64> {
    let (mut send, mut recv) = connection.open_bi().await?;
    let started = SystemClock.now();
    send.write_all(b"d").await?;
    send.write_all(&bytes.to_le_bytes()).await?;
    send.finish()?;
    let mut received = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        received += chunk.bytes.len() as u64;
    }
    if received != bytes {
        bail!("download ended after {received} of {bytes} bytes");
    }
    Ok(SystemClock
        .now()
        .saturating_duration_since(started)
        .as_secs_f64())
}

async fn serve(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    if let Err(error) = answer(send, recv).await {
                        eprintln!("server stream: {error:#}");
                    }
                });
            }
        });
    }
}

/// Serves one stream: `u` + bytes (read all, answer `k`) or `d` + length (write that many).
async fn answer(mut send: quinn::SendStream, mut recv: quinn::RecvStream) -> anyhow::Result<()> {
    let mut kind = [0u8; 1];
    recv.read_exact(&mut kind).await?;
    match kind[0] {
        b'u' => {
            while recv.read_chunk(usize::MAX, true).await?.is_some() {}
            send.write_all(b"k").await?;
            send.finish()?;
        }
        b'd' => {
            let mut length = [0u8; 8];
            recv.read_exact(&mut length).await?;
            let mut left = u64::from_le_bytes(length);
            let chunk = Bytes::from(vec![0xa5; 1 << 20]);
            while left > 0 {
                let take = left.min(chunk.len() as u64) as usize;
                send.write_chunk(chunk.slice(..take)).await?;
                left -= take as u64;
            }
            send.finish()?;
            // Keep the stream until the client has everything (finish only queues the FIN).
            let _ = send.stopped().await;
        }
        other => bail!("unknown request kind {other}"),
    }
    Ok(())
}

fn server_endpoint(
    cli: &Cli,
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = node_transport();
    tune(&mut transport, cli);
    server_config.transport_config(Arc::new(transport));
    let socket = udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(quinn::Endpoint::new(
        endpoint_config(cli)?,
        Some(server_config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

fn client_endpoint(
    cli: &Cli,
    certificate: CertificateDer<'static>,
) -> anyhow::Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate)?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
    let mut transport = match cli.client_windows {
        // The SDK keeps quinn's defaults apart from timeouts (client/src/connection.rs).
        ClientWindows::Sdk => quinn::TransportConfig::default(),
        ClientWindows::Node => node_transport(),
    };
    tune(&mut transport, cli);
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    client_config.transport_config(Arc::new(transport));
    let socket = udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let mut endpoint = quinn::Endpoint::new(
        endpoint_config(cli)?,
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    endpoint.set_default_client_config(client_config);
    Ok(endpoint)
}

/// The node's transport settings (`QuicServer::bind`).
fn node_transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(NODE_STREAM_RECEIVE_WINDOW.into())
        .receive_window(NODE_CONNECTION_WINDOW.into())
        .send_window(u64::from(NODE_CONNECTION_WINDOW))
        // The node's 60 s idle timeout, in milliseconds.
        .max_idle_timeout(Some(quinn::VarInt::from_u32(60_000).into()));
    transport
}

fn tune(transport: &mut quinn::TransportConfig, cli: &Cli) {
    transport.enable_segmentation_offload(cli.gso);
    if let Some(payload) = cli.max_udp_payload {
        let mut discovery = quinn::MtuDiscoveryConfig::default();
        discovery.upper_bound(payload);
        transport.mtu_discovery_config(Some(discovery));
    }
}

fn endpoint_config(cli: &Cli) -> anyhow::Result<quinn::EndpointConfig> {
    let mut config = quinn::EndpointConfig::default();
    if let Some(payload) = cli.max_udp_payload {
        config.max_udp_payload_size(payload)?;
    }
    Ok(config)
}

/// This process's user + system CPU time, from `/proc/self/stat` (10 ms ticks: `USER_HZ` is
/// 100 for user space); `None` without `/proc`.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name: utime and stime are fields 14 and 15 of proc_pid_stat(5).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// What quinn-udp detected on this kernel: most segments per GSO send (1 = GSO off) and per
/// GRO receive (1 = GRO off).
fn offload_segments() -> anyhow::Result<(usize, usize)> {
    let socket = udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    Ok((state.max_gso_segments(), state.gro_segments()))
}

/// A UDP socket with the node's 4 MiB buffers (the kernel caps them at net.core.*mem_max).
fn udp_socket(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_recv_buffer_size(UDP_BUFFER_BYTES)?;
    socket.set_send_buffer_size(UDP_BUFFER_BYTES)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

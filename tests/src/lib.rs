//! End-to-end test harness: real `ledge-node` processes on loopback.
//!
//! [`NodeProcess::start`] builds the workspace binaries once per test process, starts a node
//! on `127.0.0.1:0` with a fresh temporary data directory, and waits for its readiness line
//! (`ledge-node listening on ADDR`), which the node prints only after its listener is up.
//! The node's output goes to `<data-dir>/../node.log` for post-mortems. Children are killed
//! when the handle drops. Every wait is bounded.
//!
//! [`fault_proxy::FaultProxy`] puts a UDP proxy that drops, delays and blocks datagrams
//! between clients (or nodes) and a node.

pub mod cluster_harness;
pub mod fault_proxy;
pub mod history;
pub mod ports;
pub mod workload;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// How long a node may take to become ready (a debug build on a loaded 2-core machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a workspace binary in the target directory the tests were built into, built
/// first (once per test process) so the tests never run a stale binary.
pub fn binary(name: &str) -> PathBuf {
    build_binary_once(name);
    target_dir().join(name)
}

fn target_dir() -> PathBuf {
    // tests are at target/<profile>/deps/e2e-<hash>; binaries at target/<profile>/.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

fn build_binary_once(name: &str) {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if built.contains(name) {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    // `--workspace` keeps the feature set of `cargo test --workspace`, so nothing is rebuilt.
    // Build the profile the tests run in, so `cargo test --release` uses a release node.
    let release = target_dir()
        .file_name()
        .is_some_and(|profile| profile == "release");
    let mut arguments = vec!["build", "--workspace", "--bin", name];
    if release {
        arguments.push("--release");
    }
    let status = Command::new(cargo)
        .args(arguments)
        .arg("--manifest-path")
        .arg(&manifest)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {name} failed");
    built.insert(name.to_string());
}

/// Options for starting a node.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Data directory; a fresh temporary one if `None`.
    pub data_dir: Option<PathBuf>,
    /// TOML config text, written to a file and passed with `--config`.
    pub config: Option<String>,
    /// Listen address; `127.0.0.1:0` if `None`.
    pub listen: Option<SocketAddr>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables (name, value), e.g. `NOTIFY_SOCKET`.
    pub env: Vec<(String, String)>,
    /// How long to wait for the ready line; `READY_TIMEOUT` if `None` (a config that
    /// compiles several WASM modules at start takes longer in a debug build).
    pub ready_timeout: Option<Duration>,
}

/// A running `ledge-node` child process.
pub struct NodeProcess {
    child: Option<Child>,
    /// The UDP address it listens on.
    pub addr: SocketAddr,
    /// The TCP address of its Kafka listener, if it runs one.
    pub kafka_addr: Option<SocketAddr>,
    /// The TCP address of its Kafka TLS listener, if it runs one.
    pub kafka_tls_addr: Option<SocketAddr>,
    /// The TCP address of its admin HTTP listener, if it runs one.
    pub admin_addr: Option<SocketAddr>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The dev CA it generated (`<data-dir>/tls/ca.pem`).
    pub ca_file: PathBuf,
    /// Where its output goes.
    pub log_file: PathBuf,
    options: NodeOptions,
    /// `RLIMIT_NOFILE` (soft, hard) set in the child before it runs, if any.
    open_files_limit: Option<(u64, u64)>,
    /// A program (with arguments) the node is started through, e.g. `unshare`.
    wrapper: Vec<String>,
    _temporary: Option<tempfile::TempDir>,
}

impl NodeProcess {
    /// Starts a node with a fresh data directory.
    pub fn start() -> Self {
        Self::start_with(NodeOptions::default())
    }

    /// Starts a node with `options`.
    pub fn start_with(options: NodeOptions) -> Self {
        Self::start_limited(options, None)
    }

    /// Starts a node with `options` and, if given, its `RLIMIT_NOFILE` set to (soft, hard)
    /// (kept across restarts), as `ulimit -n` would before starting it.
    pub fn start_limited(options: NodeOptions, open_files_limit: Option<(u64, u64)>) -> Self {
        Self::start_configured(options, open_files_limit, Vec::new())
    }

    fn start_configured(
        options: NodeOptions,
        open_files_limit: Option<(u64, u64)>,
        wrapper: Vec<String>,
    ) -> Self {
        let (temporary, data_dir) = match &options.data_dir {
            Some(directory) => (None, directory.clone()),
            None => {
                let temporary = tempfile::tempdir().expect("temporary directory");
                let directory = temporary.path().join("data");
                (Some(temporary), directory)
            }
        };
        let mut node = Self {
            child: None,
            // Not port 0: the node's Kafka listener takes the QUIC port's number over TCP, and
            // a restart binds both again; a port from the kernel's ephemeral range could by
            // then be some client connection's local port (EADDRINUSE on restart).
            addr: options
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], ports::reserve_run(1)))),
            kafka_addr: None,
            kafka_tls_addr: None,
            admin_addr: None,
            ca_file: data_dir.join("tls").join("ca.pem"),
            log_file: data_dir.with_extension("log"),
            data_dir,
            options,
            open_files_limit,
            wrapper,
            _temporary: temporary,
        };
        node.spawn();
        node
    }

    /// Starts a node through `wrapper` (a program and its arguments, given the node's
    /// command line after them), e.g. `unshare -m sh -c '...; exec "$@"' sh`; kept across
    /// restarts.
    pub fn start_wrapped(options: NodeOptions, wrapper: &[&str]) -> Self {
        Self::start_configured(
            options,
            None,
            wrapper.iter().map(|part| part.to_string()).collect(),
        )
    }

    fn spawn(&mut self) {
        let (output_reader, output_writer) = std::io::pipe().expect("create the output pipe");
        let mut command = match self.wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(binary("ledge-node"));
                command
            }
            None => Command::new(binary("ledge-node")),
        };
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.options.args)
            .envs(self.options.env.iter().map(|(name, value)| (name, value)))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // One pipe for both: the kernel keeps the node's stdout and stderr lines in the
            // order they were written, so every log line written before the ready line is in
            // the log file when the ready line is seen (two pipes copied by two threads let a
            // test read the log before the stderr thread caught up).
            .stdout(output_writer.try_clone().expect("clone the output pipe"))
            .stderr(output_writer);
        if let Some((soft, hard)) = self.open_files_limit {
            limit_open_files(&mut command, soft, hard);
        }
        // The default admin port (127.0.0.1:9644) is one for the whole machine: unless the
        // test chose, each node takes any free port (printed, read below).
        if !self.options.args.iter().any(|arg| arg == "--admin-listen") {
            command.args(["--admin-listen", "127.0.0.1:0"]);
        }
        if let Some(config) = &self.options.config {
            let path = self.data_dir.with_extension("toml");
            std::fs::write(&path, config).expect("write node config");
            command.arg("--config").arg(path);
        }
        let mut child = command.spawn().expect("spawn ledge-node");
        // The command holds the pipe's write ends: without dropping them the reader would
        // never see the end of the output after the node exits.
        drop(command);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .expect("open node log");
        let (ready_sender, ready) = mpsc::channel();
        std::thread::spawn(move || {
            // The node prints its Kafka address (if it listens for Kafka) before the ready
            // line.
            let mut kafka = None;
            let mut kafka_tls = None;
            let mut admin = None;
            for line in BufReader::new(output_reader).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Some(address) = line.strip_prefix("ledge-node kafka listening on ") {
                    kafka = Some(address.trim().to_string());
                }
                if let Some(address) = line.strip_prefix("ledge-node kafka tls listening on ") {
                    kafka_tls = Some(address.trim().to_string());
                }
                if let Some(address) = line.strip_prefix("ledge-node admin listening on ") {
                    admin = Some(address.trim().to_string());
                }
                if let Some(address) = line.strip_prefix("ledge-node listening on ") {
                    let _ = ready_sender.send((
                        address.trim().to_string(),
                        kafka.take(),
                        kafka_tls.take(),
                        admin.take(),
                    ));
                }
            }
        });
        let ready_timeout = self.options.ready_timeout.unwrap_or(READY_TIMEOUT);
        match ready.recv_timeout(ready_timeout) {
            Ok((address, kafka, kafka_tls, admin)) => {
                self.admin_addr =
                    admin.map(|admin| admin.parse().expect("node prints a socket address"));
                self.addr = address.parse().expect("node prints a socket address");
                self.kafka_addr =
                    kafka.map(|kafka| kafka.parse().expect("node prints a socket address"));
                self.kafka_tls_addr =
                    kafka_tls.map(|kafka| kafka.parse().expect("node prints a socket address"));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ledge-node did not become ready within {ready_timeout:?}; log:\n{}",
                    std::fs::read_to_string(&self.log_file).unwrap_or_default()
                );
            }
        }
        self.child = Some(child);
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (graceful shutdown), waiting up to `timeout` for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) with a pid we own; no memory is involved.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            waited += step;
            if waited > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(step);
        }
    }

    /// Starts the node again on the same data directory and address.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sets `RLIMIT_NOFILE` to (soft, hard) in the child `command` starts, before it runs.
pub fn limit_open_files(command: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit(2),
    // which is async-signal-safe, on a struct copied into the closure.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the `ledge` CLI with `args` (and `stdin`), returning (exit status, stdout, stderr).
pub fn run_cli(args: &[&str], stdin: Option<&str>) -> (ExitStatus, String, String) {
    let mut child = Command::new(binary("ledge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ledge");
    let mut input = child.stdin.take().expect("piped stdin");
    let text = stdin.unwrap_or_default().to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let output = child.wait_with_output().expect("wait for ledge");
    let _ = writer.join();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A bare QUIC client that sends raw frames, for tests of what the node does with bad
/// input (the SDK never sends such frames).
pub struct RawClient {
    /// The connection.
    pub connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    /// Connects to `node`, trusting its dev CA.
    pub async fn connect(node: &NodeProcess) -> Self {
        Self::try_connect(node).await.expect("connect to the node")
    }

    /// Connects to `node` trusting its dev CA, returning the error instead of panicking.
    pub async fn try_connect(node: &NodeProcess) -> Result<Self, String> {
        Self::connect_trusting(node, &node.ca_file).await
    }

    /// Connects to `node` trusting only the CA in `ca_file`.
    pub async fn connect_trusting(node: &NodeProcess, ca_file: &Path) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(ca_file).map_err(|error| error.to_string())?;
        for certificate in CertificateDer::pem_slice_iter(&ca) {
            roots
                .add(certificate.map_err(|error| error.to_string())?)
                .map_err(|error| error.to_string())?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        crypto.alpn_protocols = vec![ledge_protocol::wire::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|error| error.to_string())?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address"))
            .map_err(|error| error.to_string())?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
        let connection = endpoint
            .connect(node.addr, "localhost")
            .map_err(|error| error.to_string())?
            .await
            .map_err(|error| error.to_string())?;
        Ok(Self {
            connection,
            _endpoint: endpoint,
        })
    }

    /// Sends one frame on a new stream and returns the whole response.
    pub async fn exchange(&self, frame: bytes::Bytes) -> Result<Vec<u8>, String> {
        let (mut send, mut receive) = self
            .connection
            .open_bi()
            .await
            .map_err(|error| error.to_string())?;
        send.write_all(&frame)
            .await
            .map_err(|error| error.to_string())?;
        send.finish().map_err(|error| error.to_string())?;
        receive
            .read_to_end(256 * 1024 * 1024)
            .await
            .map_err(|error| error.to_string())
    }

    /// Sends a request and decodes the response header and body.
    pub async fn request(
        &self,
        request: &ledge_protocol::wire::Request,
    ) -> (
        ledge_protocol::wire::ResponseHeader,
        Option<ledge_protocol::wire::Response>,
    ) {
        let frame = ledge_protocol::wire::encode_request(7, "raw-test", request);
        let bytes = self.exchange(frame).await.expect("exchange");
        ledge_protocol::wire::decode_response(request.api_key(), bytes::Bytes::from(bytes))
            .expect("decodable response")
    }
}

/// A two-worker tokio runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An SDK client for `node` that notices a lost node within about two seconds.
pub async fn connect(node: &NodeProcess) -> ledge_client::Client {
    let mut config = ledge_client::ClientConfig::new(
        node.addr.to_string(),
        ledge_client::Trust::CaFile(node.ca_file.clone()),
    );
    config.idle_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(10);
    ledge_client::Client::connect(config)
        .await
        .expect("connect to the node")
}

/// Creates a topic with default configs.
pub async fn create_topic(client: &ledge_client::Client, name: &str, partitions: u32) {
    ledge_client::Admin::new(client)
        .create_topics(vec![ledge_client::NewTopic::new(name, partitions)], false)
        .await
        .expect("create topic");
}

/// Sends records `first..first + count` (value `value-N`, key `kN`, so they spread over the
/// partitions) and waits for every acknowledgement.
pub async fn produce_numbered(client: &ledge_client::Client, topic: &str, first: u64, count: u64) {
    let producer = ledge_client::Producer::new(client, ledge_client::ProducerConfig::default())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for index in first..first + count {
        let record = ledge_client::ProducerRecord::new(topic, format!("value-{index}"))
            .key(format!("k{index}"));
        deliveries.push(producer.send(record).await.expect("send"));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
}

/// Waits (up to `timeout`) until `group` is stable with members whose assignment sizes,
/// sorted, are `sizes`; panics with the last description otherwise.
pub async fn wait_for_members(
    admin: &ledge_client::Admin,
    group: &str,
    sizes: &[usize],
    timeout: Duration,
) -> ledge_client::GroupDescription {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(description) = admin.describe_group(group).await {
            let mut found: Vec<usize> = description
                .members
                .iter()
                .map(|member| member.assignment.len())
                .collect();
            found.sort_unstable();
            if found == sizes && description.state == "Stable" {
                return description;
            }
            last = Some(description);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("group {group} did not settle to member sizes {sizes:?}; last: {last:#?}");
}

/// The bytes of an example plug-in from `filters/` (`high_value_orders`, `uppercase`, ...),
/// building the `filters/` workspace for wasm32 first if the module is missing (`.ci/run`
/// builds it before the tests; this keeps `cargo test` alone working too).
pub fn filter_module(name: &str) -> bytes::Bytes {
    static BUILT: OnceLock<()> = OnceLock::new();
    let filters = Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters");
    let path = filters
        .join("target/wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    if !path.exists() {
        BUILT.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
                .arg("--manifest-path")
                .arg(filters.join("Cargo.toml"))
                .status()
                .expect("run cargo build for filters/");
            assert!(
                status.success(),
                "building filters/ failed (rustup target add wasm32-unknown-unknown?)"
            );
        });
    }
    let bytes =
        std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    bytes::Bytes::from(bytes)
}

/// Compiles WebAssembly text to a binary module (for deliberately hostile test modules).
pub fn wat_to_wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}

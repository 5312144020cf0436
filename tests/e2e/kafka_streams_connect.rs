//! Kafka Streams and Kafka Connect (Apache Kafka 4.1.1's jars, pinned in
//! `tests/kafka/java/pom.xml`) against a node's Kafka listener.
//!
//! - Streams: the tutorial's topology (`tests/kafka/java/OrdersStreamsApp.java`, compiled
//!   with `javac` here against the jars): filter, mapValues, groupBy + count into a KTable,
//!   each to an output topic, with `processing.guarantee=at_least_once`; stopped and restarted
//!   with an empty state directory, so its counts must come back from the changelog topic and
//!   its input resume from the committed offsets. With `exactly_once_v2` it must fail at once
//!   (transactions are not served).
//! - Connect: a standalone worker and then a distributed one (its config, offset and status
//!   topics compacted topics on the node, its workers a `connect` group on the node's classic
//!   group coordinator, connectors created through the REST API as the tutorial does), each
//!   running a FileStreamSource (a file into a topic) and a FileStreamSink (the topic into
//!   another file); the worker is stopped, lines appended, the worker restarted: only the new
//!   lines flow.
//!
//! The records are produced and read back with kcat (no JVM start-up per read), Connect's REST
//! API is driven with curl. `.ci/run` installs the jars, kcat and curl and sets `LEDGE_REQUIRE_KAFKA_CLIENTS=1`: there a missing one
//! fails the test; elsewhere it is reported ("skipped: ...") and the test returns.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledge_e2e::NodeProcess;

use crate::kafka_clients::{kcat, run_kcat};
use crate::kafka_java::{kafka_java_lib, missing, tool_ok};

/// How long a scenario waits for records to come out of Streams or Connect; the JVMs start
/// in a few seconds and the group's first rebalance waits `groups.initial_rebalance_delay_ms`.
const FLOW_WAIT_MAX: Duration = Duration::from_secs(90);
/// How long a stopped Streams app or Connect worker gets to close (commit offsets, leave
/// its group) before it is killed and the test fails.
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(60);
/// How often the outputs are polled.
const POLL_EVERY: Duration = Duration::from_millis(500);

fn now() -> std::time::Instant {
    crate::cluster::now()
}

/// Prints how long the scenario has run at each step (the JVMs dominate a run's time).
struct Phases(std::time::Instant);

impl Phases {
    fn start() -> Self {
        Self(now())
    }

    fn mark(&self, step: &str) {
        eprintln!("{:>6.1} s  {step}", self.0.elapsed().as_secs_f64());
    }
}

/// Every record of `topic` as `key\tvalue` lines, in offset order per partition.
fn read_topic(kcat: &Path, kafka: &str, topic: &str) -> Vec<String> {
    run_kcat(
        kcat,
        &[
            "-b",
            kafka,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ],
        "",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Polls `topic` until it holds at least `count` records or [`FLOW_WAIT_MAX`] passes; what
/// it holds then.
fn wait_for_records(kcat: &Path, kafka: &str, topic: &str, count: usize) -> Vec<String> {
    let started = now();
    loop {
        let records = read_topic(kcat, kafka, topic);
        if records.len() >= count || started.elapsed() > FLOW_WAIT_MAX {
            return records;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// A JVM running in the background: its stdout lines collected, its stderr in a file.
struct Jvm {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Jvm {
    /// Starts `class` with `args`, the jars (and `extra_classpath`) on its class path, in a
    /// small JVM (the machine's cores are shared); `properties` become `-D` options.
    fn start(
        lib: &Path,
        extra_classpath: Option<&Path>,
        properties: &[String],
        class: &str,
        args: &[&str],
        log: &Path,
    ) -> Self {
        let mut classpath = lib.join("*").into_os_string();
        if let Some(extra) = extra_classpath {
            classpath.push(":");
            classpath.push(extra);
        }
        let mut child = Command::new("java")
            .args(["-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .args(properties)
            .arg("-cp")
            .arg(classpath)
            .arg(class)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(log).expect("create the JVM's log"))
            .spawn()
            .expect("spawn java");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                collected.lock().expect("lines").push(line);
            }
        });
        Self {
            name: class.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            log: log.to_path_buf(),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// What it printed, for a failure message.
    fn output(&self) -> String {
        format!(
            "{} stdout:\n{}\nstderr:\n{}",
            self.name,
            self.lines().join("\n"),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Waits until it printed a line for which `wanted` holds, or [`FLOW_WAIT_MAX`].
    fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool) -> bool {
        let started = now();
        while started.elapsed() < FLOW_WAIT_MAX {
            if self.lines().iter().any(|line| wanted(line)) {
                return true;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return self.lines().iter().any(|line| wanted(line));
            }
            std::thread::sleep(POLL_EVERY);
        }
        false
    }

    /// Asks it to stop: `line` on its stdin if given, else SIGTERM (Connect's shutdown hook
    /// stops the worker cleanly); its exit status, `None` if it did not stop in
    /// [`CLOSE_WAIT_MAX`] (then it is killed).
    fn stop(&mut self, line: Option<&str>) -> Option<ExitStatus> {
        match (line, self.stdin.as_mut()) {
            (Some(line), Some(stdin)) => {
                let _ = writeln!(stdin, "{line}");
                let _ = stdin.flush();
            }
            _ => {
                let _ = Command::new("kill")
                    .args(["-TERM", &self.child.id().to_string()])
                    .status();
            }
        }
        let started = now();
        while started.elapsed() < CLOSE_WAIT_MAX {
            if let Some(status) = self.child.try_wait().expect("wait for the JVM") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An order as the tutorial's Faust app defines it, as JSON.
struct Order {
    order_id: u32,
    customer_id: u32,
    amount: f64,
}

impl Order {
    fn json(&self) -> String {
        format!(
            "{{\"order_id\": {}, \"customer_id\": {}, \"amount\": {:.2}}}",
            self.order_id, self.customer_id, self.amount
        )
    }
}

/// `count` orders from `first_id` on, over `customers` customers, about a third of them
/// above the tutorial's 1000 threshold.
fn orders(first_id: u32, count: u32, customers: u32) -> Vec<Order> {
    (first_id..first_id + count)
        .map(|order_id| Order {
            order_id,
            customer_id: order_id * 7 % customers + 1,
            amount: f64::from(order_id * 389 % 1500) + 0.25,
        })
        .collect()
}

/// Produces `orders` to `orders`, keyed by order id.
fn produce_orders(kcat: &Path, kafka: &str, orders: &[Order]) {
    let lines: String = orders
        .iter()
        .map(|order| format!("{}\t{}\n", order.order_id, order.json()))
        .collect();
    run_kcat(
        kcat,
        &[
            "-b", kafka, "-P", "-t", "orders", "-K", "\t", "-X", "acks=all",
        ],
        &lines,
    );
}

/// Compiles `tests/kafka/java/OrdersStreamsApp.java` against the jars into `classes`.
fn compile_streams_app(lib: &Path, classes: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka/java/OrdersStreamsApp.java");
    let output = Command::new("javac")
        .arg("-cp")
        .arg(lib.join("*"))
        .arg("-d")
        .arg(classes)
        .arg(&source)
        .output()
        .expect("run javac");
    assert!(
        output.status.success(),
        "javac {}: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// The tutorial's Streams topology against the node: exact outputs, internal topics created
/// through CreateTopics (the changelog compacted), and after a clean stop and a restart with
/// an empty state directory, counts restored from the changelog and only the new orders
/// processed (at-least-once with a clean close reprocesses nothing).
#[test]
fn kafka_streams_tutorial_topology_survives_a_restart() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java jars");
        return;
    };
    let Some(kcat) = kcat() else {
        missing("kcat");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default")
        .to_string();
    let work = tempfile::tempdir().expect("temporary directory");
    let classes = work.path().join("classes");
    let phases = Phases::start();
    compile_streams_app(&lib, &classes);
    phases.mark("compiled the app");

    let first = orders(0, 40, 5);
    let second = orders(40, 24, 7);
    let start_app = |state: &str, log: &str| {
        Jvm::start(
            &lib,
            Some(&classes),
            &[],
            "OrdersStreamsApp",
            &[&kafka, &work.path().join(state).to_string_lossy()],
            &work.path().join(log),
        )
    };
    // What the topology must have produced once it has seen `orders`: the high-value ones
    // and the upper-cased ones (sorted: two input partitions interleave), and per customer
    // the count updates 1, 2, ... n in order (one per order: the app has no record cache).
    let expected = |orders: &[&Order]| {
        let high: Vec<String> = orders
            .iter()
            .filter(|order| order.amount > 1000.0)
            .map(|order| format!("{}\t{}", order.order_id, order.json()))
            .collect();
        let upper: Vec<String> = orders
            .iter()
            .map(|order| format!("{}\t{}", order.order_id, order.json().to_uppercase()))
            .collect();
        let mut counts: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for order in orders {
            let seen = counts.entry(order.customer_id).or_default();
            seen.push((seen.len() + 1).to_string());
        }
        (sorted(high), sorted(upper), counts)
    };
    // The count updates per customer, in the order they were written.
    let counts_by_customer = |records: &[String]| {
        let mut counts: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for record in records {
            let (customer, count) = record.split_once('\t').expect("key\tcount");
            counts
                .entry(customer.parse().expect("a customer id"))
                .or_default()
                .push(count.to_owned());
        }
        counts
    };

    // The app creates its topics, then the orders arrive.
    let mut app = start_app("state-1", "streams-1.log");
    assert!(
        app.wait_for_line(|line| line == "state RUNNING"),
        "{}\nnode log:\n{}",
        app.output(),
        node.log()
    );
    phases.mark("app running");
    produce_orders(&kcat, &kafka, &first);
    let all_first: Vec<&Order> = first.iter().collect();
    let (high, upper, counts) = expected(&all_first);
    let count_updates = first.len();
    let counted = wait_for_records(&kcat, &kafka, "order-counts", count_updates);
    let failure =
        |what: &str, app: &Jvm| format!("{what}\n{}\nnode log:\n{}", app.output(), node.log());
    assert_eq!(
        counts_by_customer(&counted),
        counts,
        "{}",
        failure("counts", &app)
    );
    let high_seen = wait_for_records(&kcat, &kafka, "high-value-orders", high.len());
    assert_eq!(sorted(high_seen), high, "{}", failure("high value", &app));
    let upper_seen = wait_for_records(&kcat, &kafka, "orders-upper", upper.len());
    assert_eq!(sorted(upper_seen), upper, "{}", failure("upper", &app));
    phases.mark("first orders processed");

    // The internal topics, created by the app through CreateTopics: one repartition topic
    // (groupBy) and one changelog (count), with as many partitions as the input.
    let listed = run_kcat(&kcat, &["-b", &kafka, "-L"], "");
    let internal: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.trim().strip_prefix("topic \""))
        .filter_map(|rest| rest.split_once('"'))
        .filter(|(name, _)| name.starts_with("orders-app-"))
        .map(|(name, rest)| {
            assert!(rest.contains("with 2 partitions"), "{name}: {listed}");
            name
        })
        .collect();
    assert_eq!(internal.len(), 2, "{listed}");
    assert!(
        internal.iter().any(|name| name.ends_with("-repartition")),
        "{listed}"
    );
    let changelog = internal
        .iter()
        .find(|name| name.ends_with("-changelog"))
        .unwrap_or_else(|| panic!("no changelog topic: {listed}"))
        .to_string();
    let configs = tool_ok(
        &node,
        &lib,
        "kafka.admin.ConfigCommand",
        &[
            "--bootstrap-server",
            &kafka,
            "--describe",
            "--entity-type",
            "topics",
            "--entity-name",
            &changelog,
        ],
        "",
    );
    assert!(
        configs
            .lines()
            .any(|line| line.trim_start().starts_with("cleanup.policy=compact ")),
        "{changelog}: {configs}"
    );

    phases.mark("internal topics checked");
    // A clean stop commits the offsets; the restart gets an empty state directory.
    assert!(
        app.stop(Some("stop"))
            .is_some_and(|status| status.success()),
        "{}",
        app.output()
    );
    assert!(
        app.lines().iter().any(|line| line == "closed"),
        "{}",
        app.output()
    );
    phases.mark("app stopped");
    produce_orders(&kcat, &kafka, &second);
    let mut app = start_app("state-2", "streams-2.log");
    let all: Vec<&Order> = first.iter().chain(&second).collect();
    let (high, upper, counts) = expected(&all);
    let counted = wait_for_records(&kcat, &kafka, "order-counts", all.len());
    assert_eq!(
        counts_by_customer(&counted),
        counts,
        "{}",
        failure("counts after the restart", &app)
    );
    let high_seen = wait_for_records(&kcat, &kafka, "high-value-orders", high.len());
    assert_eq!(
        sorted(high_seen),
        high,
        "{}",
        failure("high value after the restart", &app)
    );
    let upper_seen = wait_for_records(&kcat, &kafka, "orders-upper", upper.len());
    assert_eq!(
        sorted(upper_seen),
        upper,
        "{}",
        failure("upper after the restart", &app)
    );
    phases.mark("restarted app processed the new orders");
    // The counts came back from the changelog: the store was restored, not rebuilt from the
    // orders (those before the committed offsets are never read again).
    let restored: u64 = app
        .lines()
        .iter()
        .filter_map(|line| line.strip_prefix("restored "))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let customers_before = expected(&all_first).2.len() as u64;
    assert!(
        restored >= customers_before,
        "restored {restored}: {}",
        app.output()
    );
    assert!(
        app.stop(Some("stop"))
            .is_some_and(|status| status.success()),
        "{}",
        app.output()
    );
    phases.mark("restarted app stopped");
    // Nothing more came out after the last read.
    assert_eq!(read_topic(&kcat, &kafka, "order-counts").len(), all.len());
}

/// The same app with `processing.guarantee=exactly_once_v2`: transactions are not served, and
/// the app must be told so at once (its transactional producer's FindCoordinator is refused
/// with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which is fatal), not retry forever.
#[test]
fn kafka_streams_exactly_once_fails_at_once() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java jars");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default")
        .to_string();
    let work = tempfile::tempdir().expect("temporary directory");
    let classes = work.path().join("classes");
    compile_streams_app(&lib, &classes);
    let phases = Phases::start();
    let mut app = Jvm::start(
        &lib,
        Some(&classes),
        &[],
        "OrdersStreamsApp",
        &[
            &kafka,
            &work.path().join("state").to_string_lossy(),
            "exactly_once_v2",
        ],
        &work.path().join("streams.log"),
    );
    assert!(
        app.wait_for_line(|line| line.starts_with("failed ")),
        "{}\nnode log:\n{}",
        app.output(),
        node.log()
    );
    phases.mark("the app failed");
    assert!(
        app.output()
            .contains("TransactionalIdAuthorizationException"),
        "{}",
        app.output()
    );
    assert!(app.stop(Some("stop")).is_some(), "{}", app.output());
}

/// A free TCP port on loopback for a Connect worker's REST listener.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `curl` on the PATH (the tutorial drives Connect's REST API with it).
fn curl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join("curl"))
        .find(|candidate| candidate.is_file())
}

/// One REST call to a Connect worker: (HTTP status, body); status 0 if nothing answered.
fn rest(curl: &Path, port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut command = Command::new(curl);
    command
        .args(["-s", "-m", "30", "-X", method, "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    if body.is_some() {
        command.args(["-H", "Content-Type: application/json", "-d", "@-"]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn curl");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(body.unwrap_or_default().as_bytes())
        .expect("write curl's stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// The lines of `file` (none if it does not exist yet).
fn file_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `file` until it has at least `count` lines or [`FLOW_WAIT_MAX`] passes; its lines.
fn wait_for_lines(file: &Path, count: usize) -> Vec<String> {
    let started = now();
    loop {
        let lines = file_lines(file);
        if lines.len() >= count || started.elapsed() > FLOW_WAIT_MAX {
            return lines;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

fn append_lines(file: &Path, lines: &[&str]) {
    let mut writer = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("open the source file");
    for line in lines {
        writeln!(writer, "{line}").expect("append to the source file");
    }
}

/// What a Connect scenario uses: the node, kcat, the jars, and a directory for the files.
struct ConnectSetup {
    node: NodeProcess,
    kafka: String,
    kcat: PathBuf,
    lib: PathBuf,
    work: tempfile::TempDir,
    source: PathBuf,
    sink: PathBuf,
}

impl ConnectSetup {
    fn new() -> Option<Self> {
        let Some(lib) = kafka_java_lib() else {
            missing("the Kafka Java jars");
            return None;
        };
        let Some(kcat) = kcat() else {
            missing("kcat");
            return None;
        };
        let node = NodeProcess::start();
        let kafka = node
            .kafka_addr
            .expect("the Kafka listener is on by default")
            .to_string();
        let work = tempfile::tempdir().expect("temporary directory");
        let source = work.path().join("in.txt");
        let sink = work.path().join("out.txt");
        Some(Self {
            node,
            kafka,
            kcat,
            lib,
            work,
            source,
            sink,
        })
    }

    /// The worker settings both modes share: String converters (a line is a string), offsets
    /// flushed every second, plug-ins found through their service manifests (connect-file's
    /// jar has them; scanning every jar would add seconds to each start).
    fn worker_properties(&self, port: u16) -> String {
        format!(
            "bootstrap.servers={}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.flush.interval.ms=1000\n\
             listeners=http://127.0.0.1:{port}\n\
             plugin.discovery=service_load\n",
            self.kafka
        )
    }

    /// The two connectors' settings: the source file into topic `lines` (created by Connect
    /// through CreateTopics, `topic.creation.default.*`), the topic into the sink file.
    fn connectors(&self) -> [(&'static str, Vec<(&'static str, String)>); 2] {
        [
            (
                "file-source",
                vec![
                    (
                        "connector.class",
                        "org.apache.kafka.connect.file.FileStreamSourceConnector".to_owned(),
                    ),
                    ("tasks.max", "1".to_owned()),
                    ("file", self.source.to_string_lossy().into_owned()),
                    ("topic", "lines".to_owned()),
                    ("topic.creation.default.partitions", "1".to_owned()),
                    ("topic.creation.default.replication.factor", "-1".to_owned()),
                ],
            ),
            (
                "file-sink",
                vec![
                    (
                        "connector.class",
                        "org.apache.kafka.connect.file.FileStreamSinkConnector".to_owned(),
                    ),
                    ("tasks.max", "1".to_owned()),
                    ("file", self.sink.to_string_lossy().into_owned()),
                    ("topics", "lines".to_owned()),
                ],
            ),
        ]
    }

    fn start_worker(&self, class: &str, files: &[&Path], log: &str) -> Jvm {
        let args: Vec<String> = files
            .iter()
            .map(|file| file.to_string_lossy().into_owned())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Jvm::start(
            &self.lib,
            None,
            &[format!(
                "-Dlog4j2.configurationFile={}",
                self.log4j_config().display()
            )],
            class,
            &args,
            &self.work.path().join(log),
        )
    }

    /// Connect's INFO log to stderr (the JVM's log file), as the distribution's
    /// `connect-log4j2.yaml` does to the console.
    fn log4j_config(&self) -> PathBuf {
        let file = self.work.path().join("log4j2.properties");
        if !file.exists() {
            std::fs::write(
                &file,
                "appender.err.type = Console\n\
                 appender.err.name = err\n\
                 appender.err.target = SYSTEM_ERR\n\
                 appender.err.layout.type = PatternLayout\n\
                 appender.err.layout.pattern = [%d] %p %m (%c)%n\n\
                 rootLogger.level = INFO\n\
                 rootLogger.appenderRef.err.ref = err\n",
            )
            .expect("write the log4j2 config");
        }
        file
    }

    /// Waits for the sink file to hold `expected` exactly, and topic `lines` the same values.
    fn check_flow(&self, worker: &Jvm, expected: &[&str]) {
        let lines = wait_for_lines(&self.sink, expected.len());
        assert_eq!(
            lines,
            expected,
            "sink file\n{}\nnode log:\n{}",
            worker.output(),
            self.node.log()
        );
        let records: Vec<String> = read_topic(&self.kcat, &self.kafka, "lines")
            .into_iter()
            .map(|record| {
                record
                    .split_once('\t')
                    .map(|(_, value)| value.to_owned())
                    .unwrap_or(record)
            })
            .collect();
        assert_eq!(records, expected, "topic lines\n{}", worker.output());
    }
}

const FIRST_LINES: [&str; 3] = ["alpha", "beta", "gamma"];
const LATER_LINES: [&str; 2] = ["delta", "epsilon"];

/// A standalone worker (offsets of the source in a local file, of the sink in the node's
/// group offsets) with the file source and sink: lines flow through the topic into the sink
/// file; after a stop, two appended lines and a restart, only the new lines flow.
#[test]
fn kafka_connect_standalone_file_source_and_sink_resume() {
    let Some(setup) = ConnectSetup::new() else {
        return;
    };
    let port = free_port();
    let worker_file = setup.work.path().join("worker.properties");
    std::fs::write(
        &worker_file,
        format!(
            "{}offset.storage.file.filename={}\n",
            setup.worker_properties(port),
            setup.work.path().join("standalone.offsets").display()
        ),
    )
    .expect("write the worker properties");
    let mut connector_files = Vec::new();
    for (name, settings) in setup.connectors() {
        let file = setup.work.path().join(format!("{name}.properties"));
        let mut text = format!("name={name}\n");
        for (key, value) in settings {
            text.push_str(&format!("{key}={value}\n"));
        }
        std::fs::write(&file, text).expect("write the connector properties");
        connector_files.push(file);
    }
    let files: Vec<&Path> = std::iter::once(worker_file.as_path())
        .chain(connector_files.iter().map(PathBuf::as_path))
        .collect();
    const STANDALONE: &str = "org.apache.kafka.connect.cli.ConnectStandalone";

    append_lines(&setup.source, &FIRST_LINES);
    let phases = Phases::start();
    let mut worker = setup.start_worker(STANDALONE, &files, "standalone-1.log");
    setup.check_flow(&worker, &FIRST_LINES);
    phases.mark("first lines through");
    assert!(
        worker.stop(None).is_some(),
        "the worker did not stop\n{}",
        worker.output()
    );

    append_lines(&setup.source, &LATER_LINES);
    phases.mark("worker stopped");
    let worker = setup.start_worker(STANDALONE, &files, "standalone-2.log");
    let all: Vec<&str> = FIRST_LINES.iter().chain(&LATER_LINES).copied().collect();
    setup.check_flow(&worker, &all);
    phases.mark("restarted worker: the new lines through");
}

/// A distributed worker: its config, offset and status topics created as compacted topics on
/// the node, its group a `connect` group on the node's classic coordinator, the connectors
/// created through the REST API; after a stop, two appended lines and a restart (the
/// connectors read back from the config topic, the source's offsets from the offset topic),
/// only the new lines flow.
#[test]
fn kafka_connect_distributed_file_source_and_sink_resume() {
    let Some(setup) = ConnectSetup::new() else {
        return;
    };
    let Some(curl) = curl() else {
        missing("curl");
        return;
    };
    let port = free_port();
    let worker_file = setup.work.path().join("worker.properties");
    std::fs::write(
        &worker_file,
        format!(
            "{}group.id=ledge-connect\n\
             config.storage.topic=connect-configs\n\
             offset.storage.topic=connect-offsets\n\
             status.storage.topic=connect-status\n\
             config.storage.replication.factor=-1\n\
             offset.storage.replication.factor=-1\n\
             status.storage.replication.factor=-1\n",
            setup.worker_properties(port)
        ),
    )
    .expect("write the worker properties");
    const DISTRIBUTED: &str = "org.apache.kafka.connect.cli.ConnectDistributed";

    append_lines(&setup.source, &FIRST_LINES);
    let phases = Phases::start();
    let mut worker = setup.start_worker(DISTRIBUTED, &[&worker_file], "distributed-1.log");
    for (name, settings) in setup.connectors() {
        let config: serde_json::Map<String, serde_json::Value> = settings
            .into_iter()
            .map(|(key, value)| (key.to_owned(), serde_json::Value::String(value)))
            .collect();
        let body = serde_json::json!({ "name": name, "config": config }).to_string();
        // Until the worker has joined its group and read the config topic, the REST API
        // answers 409 (rebalancing) or nothing at all.
        let started = now();
        let (status, answer) = loop {
            let (status, answer) = rest(&curl, port, "POST", "/connectors", Some(&body));
            if status == 201 || started.elapsed() > FLOW_WAIT_MAX {
                break (status, answer);
            }
            std::thread::sleep(POLL_EVERY);
        };
        assert_eq!(status, 201, "{name}: {answer}\n{}", worker.output());
    }
    phases.mark("connectors created");
    setup.check_flow(&worker, &FIRST_LINES);
    phases.mark("first lines through");
    let (status, listed) = rest(&curl, port, "GET", "/connectors", None);
    assert_eq!(status, 200, "{listed}");
    let mut names: Vec<String> = serde_json::from_str(&listed).expect("a JSON list");
    names.sort();
    assert_eq!(names, ["file-sink", "file-source"]);
    // The worker's group, as `kafka-groups --list` shows it: protocol type `connect` on the
    // node's classic group coordinator.
    let groups = tool_ok(
        &setup.node,
        &setup.lib,
        "org.apache.kafka.tools.GroupsCommand",
        &["--bootstrap-server", &setup.kafka, "--list"],
        "",
    );
    assert!(
        groups
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>()
                == ["ledge-connect", "Classic", "connect"]),
        "{groups}"
    );
    phases.mark("group listed");

    // The internal topics, created by the worker through CreateTopics: the config topic has
    // one partition (Connect checks that, and that all three are compacted, at start-up).
    let topics = run_kcat(&setup.kcat, &["-b", &setup.kafka, "-L"], "");
    for (topic, partitions) in [
        ("connect-configs", 1),
        ("connect-offsets", 25),
        ("connect-status", 5),
    ] {
        assert!(
            topics.contains(&format!("topic \"{topic}\" with {partitions} partitions")),
            "{topic}: {topics}"
        );
    }

    assert!(
        worker.stop(None).is_some(),
        "the worker did not stop\n{}",
        worker.output()
    );
    append_lines(&setup.source, &LATER_LINES);
    phases.mark("worker stopped");
    let worker = setup.start_worker(DISTRIBUTED, &[&worker_file], "distributed-2.log");
    let all: Vec<&str> = FIRST_LINES.iter().chain(&LATER_LINES).copied().collect();
    setup.check_flow(&worker, &all);
    phases.mark("restarted worker: the new lines through");
    let (status, state) = rest(&curl, port, "GET", "/connectors/file-source/status", None);
    assert_eq!(status, 200, "{state}");
    let state: serde_json::Value = serde_json::from_str(&state).expect("a JSON status");
    assert_eq!(state["connector"]["state"], "RUNNING", "{state}");
    assert_eq!(state["tasks"][0]["state"], "RUNNING", "{state}");
}

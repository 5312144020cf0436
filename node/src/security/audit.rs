//! The audit log (issue 15): every authentication failure, every authorization denial and
//! every administrative change, as one JSON object per line, rate limited.
//!
//! Two parts, as elsewhere in the node:
//! - a pure core: [`AuditEvent`] (what happened: kind, principal, host, listener, method,
//!   operation, resource, outcome, error), [`AuditEvent::json_line`] (its line), and
//!   [`AuditLimiter`] (token buckets, time passed in; counts what it suppressed);
//! - a thin sink, [`AuditLog`]: reads the node's clock, asks the limiter, writes each
//!   admitted event to the node's log (target `ledge::audit`) and queues its line for the
//!   file writer (a thread of its own appending to `<data_dir>/audit.log`, mode 0600, rotated
//!   to `audit.log.1` at `security.audit_log_bytes_max`). Queueing never waits: a full queue
//!   drops the line and counts it. A write error is logged once and the writer goes on
//!   (reopening the file for the next line).
//!
//! Kafka writes authorizer decisions to their own file (`kafka-authorizer.log`, log4j's
//! `kafka.authorizer.logger`); Ledge does the same with `audit.log`, so an operator can ship,
//! keep and protect it apart from the node's log, and adds the authentication failures and
//! administrative changes Kafka leaves to its request log.
//!
//! Rate limits (docs/SECURITY.md, "Audit log"): each kind of event has a token bucket of
//! `security.audit_events_per_second_max` events per second (the burst is the same number);
//! authentication failures also have one bucket per claimed principal and host, of
//! `security.audit_source_events_per_second_max`, so one client retrying passwords in a loop
//! uses at most that share and cannot hide the failures of others. What a bucket refuses is
//! counted, and every `security.audit_summary_interval_ms` one `audit_suppressed` line per
//! kind says how many were left out (and how many lines the full queue dropped).
//!
//! No event holds a secret: the constructors take names, addresses and error texts that the
//! SASL and TLS code already made safe to log (they never hold a password, proof, nonce or
//! key); fields the client chose are cut at [`AUDIT_FIELD_CHARS_MAX`] characters and JSON
//! escapes quotes, newlines and control characters.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::acl::{AclOperation, ResourceType};
use super::identity::{AuthMethod, ClientIdentity};
use crate::clock::Clock;

/// The audit log's file name in the data directory.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// The previous file after a rotation.
pub const AUDIT_LOG_ROTATED_FILE: &str = "audit.log.1";

/// Default `security.audit_log_bytes_max`: 64 MiB before `audit.log` rotates.
pub const AUDIT_LOG_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

/// Smallest `security.audit_log_bytes_max`: 4 KiB (a few lines).
pub const AUDIT_LOG_BYTES_MAX_MIN: u64 = 4096;

/// Default `security.audit_events_per_second_max`: lines per second per kind of event.
pub const AUDIT_EVENTS_PER_SECOND_MAX_DEFAULT: u32 = 100;

/// Default `security.audit_source_events_per_second_max`: authentication-failure lines per
/// second for one claimed principal from one host.
pub const AUDIT_SOURCE_EVENTS_PER_SECOND_MAX_DEFAULT: u32 = 10;

/// Default `security.audit_summary_interval_ms`: how often suppressed events are summed up.
pub const AUDIT_SUMMARY_INTERVAL_MS_DEFAULT: u64 = 10_000;

/// Smallest `security.audit_summary_interval_ms`: 100 ms.
pub const AUDIT_SUMMARY_INTERVAL_MS_MIN: u64 = 100;

/// Largest `security.audit_summary_interval_ms`: one day.
pub const AUDIT_SUMMARY_INTERVAL_MS_MAX: u64 = 86_400_000;

/// Default `security.audit_queue_events_max`: lines waiting for the file writer.
pub const AUDIT_QUEUE_EVENTS_MAX_DEFAULT: usize = 4096;

/// Largest `security.audit_queue_events_max`: 1 Mi lines (the queue holds at most this many
/// lines of at most a few KiB each).
pub const AUDIT_QUEUE_EVENTS_MAX_MAX: usize = 1 << 20;

/// How many principal-and-host sources the limiter tracks at once. Sources whose bucket is
/// full again are forgotten first; beyond this many busy sources, a new source has only its
/// kind's bucket. 4096 entries are a few hundred KiB.
pub const AUDIT_SOURCES_TRACKED_MAX: usize = 4096;

/// Longest value, in characters, of a field a client chose (principal, resource name,
/// error text); the rest is cut and `...` appended.
pub const AUDIT_FIELD_CHARS_MAX: usize = 256;

/// The `[security]` audit settings, checked (see `config/security.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// `audit_log`: whether `<data_dir>/audit.log` is written (the node's log gets the events
    /// either way).
    pub file: bool,
    /// `audit_log_bytes_max`: `audit.log` rotates to `audit.log.1` before it would pass this.
    pub file_bytes_max: u64,
    /// `audit_events_per_second_max`: per kind of event (also the burst).
    pub events_per_second_max: u32,
    /// `audit_source_events_per_second_max`: authentication failures per claimed principal
    /// and host (also the burst).
    pub source_events_per_second_max: u32,
    /// `audit_summary_interval_ms`: how often suppressed events are reported.
    pub summary_interval: Duration,
    /// `audit_queue_events_max`: lines waiting for the file writer before new ones are
    /// dropped (and counted).
    pub queue_events_max: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            file: true,
            file_bytes_max: AUDIT_LOG_BYTES_MAX_DEFAULT,
            events_per_second_max: AUDIT_EVENTS_PER_SECOND_MAX_DEFAULT,
            source_events_per_second_max: AUDIT_SOURCE_EVENTS_PER_SECOND_MAX_DEFAULT,
            summary_interval: Duration::from_millis(AUDIT_SUMMARY_INTERVAL_MS_DEFAULT),
            queue_events_max: AUDIT_QUEUE_EVENTS_MAX_DEFAULT,
        }
    }
}

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A client failed to prove who it is (SASL, a client certificate, or none where one is
    /// needed).
    AuthenticationFailure,
    /// An authorization check refused an operation.
    AuthorizationDenied,
    /// An administrative change was made or tried (topics, configs, ACLs, users, modules,
    /// transforms, offset resets...).
    AdminChange,
}

impl AuditKind {
    /// Every kind, in the order the limiter keeps them.
    pub const ALL: [Self; 3] = [
        Self::AuthenticationFailure,
        Self::AuthorizationDenied,
        Self::AdminChange,
    ];

    /// The `event` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::AuthenticationFailure => "authentication_failure",
            Self::AuthorizationDenied => "authorization_denied",
            Self::AdminChange => "admin_change",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::AuthenticationFailure => 0,
            Self::AuthorizationDenied => 1,
            Self::AdminChange => 2,
        }
    }
}

/// The listener an authentication failure happened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditListener {
    /// The native QUIC protocol.
    Quic,
    /// The Kafka plaintext listener.
    Kafka,
    /// The Kafka TLS listener.
    KafkaTls,
    /// The admin HTTP listener.
    Admin,
}

impl AuditListener {
    /// The `listener` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Kafka => "kafka",
            Self::KafkaTls => "kafka-tls",
            Self::Admin => "admin",
        }
    }
}

/// The `method` field for an identity: how the caller proved who it is.
pub fn method_name(method: &AuthMethod) -> &'static str {
    match method {
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::Certificate => "certificate",
        AuthMethod::SaslPlain => "PLAIN",
        AuthMethod::SaslScram(mechanism) => mechanism.name(),
        AuthMethod::HttpBasic => "http-basic",
    }
}

/// One audit event (see the module documentation for the fields' meaning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// What it is about.
    pub kind: AuditKind,
    /// The caller's principal (`User:alice`); for an authentication failure the principal
    /// the client claimed, `None` when it named none.
    pub principal: Option<String>,
    /// The client's address.
    pub host: Option<IpAddr>,
    /// The listener (authentication failures).
    pub listener: Option<AuditListener>,
    /// How the client authenticated or tried to (`SCRAM-SHA-256`, `certificate`...).
    pub method: Option<String>,
    /// The operation (`Write`), the administrative action (`CreateTopics`), or
    /// `authenticate`.
    pub operation: String,
    /// The resource's type (`Topic`), when there is one.
    pub resource_type: Option<&'static str>,
    /// The resource's name (`orders`; `kafka-cluster` for the cluster).
    pub resource_name: Option<String>,
    /// `failed`, `denied` or `done`.
    pub outcome: &'static str,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// `text` cut at [`AUDIT_FIELD_CHARS_MAX`] characters.
fn bounded(text: &str) -> String {
    let mut shown: String = text.chars().take(AUDIT_FIELD_CHARS_MAX).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown
}

impl AuditEvent {
    /// A failed authentication on `listener` from `host`: `principal` is the name the client
    /// claimed (`User:` is prepended; `None`: it gave none), `method` the mechanism or
    /// `certificate`, `error` why (never a secret).
    pub fn authentication_failure(
        listener: AuditListener,
        host: IpAddr,
        principal: Option<&str>,
        method: &str,
        error: &str,
    ) -> Self {
        Self {
            kind: AuditKind::AuthenticationFailure,
            principal: principal.map(|name| bounded(&format!("User:{name}"))),
            host: Some(host),
            listener: Some(listener),
            method: Some(bounded(method)),
            operation: "authenticate".to_owned(),
            resource_type: None,
            resource_name: None,
            outcome: "failed",
            error: Some(bounded(error)),
        }
    }

    /// `identity` was refused `operation` on the resource.
    pub fn authorization_denied(
        identity: &ClientIdentity,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Self {
        Self {
            kind: AuditKind::AuthorizationDenied,
            principal: Some(bounded(&identity.principal.to_string())),
            host: Some(identity.host),
            listener: None,
            method: Some(method_name(&identity.method).to_owned()),
            operation: operation.name().to_owned(),
            resource_type: Some(resource_type.name()),
            resource_name: Some(bounded(resource_name)),
            outcome: "denied",
            error: None,
        }
    }

    /// `identity` made (`Ok`) or tried (`Err` with why not) the administrative change
    /// `action` on the resource.
    pub fn admin_change(
        identity: &ClientIdentity,
        action: &str,
        resource_type: ResourceType,
        resource_name: &str,
        outcome: Result<(), &str>,
    ) -> Self {
        Self {
            kind: AuditKind::AdminChange,
            principal: Some(bounded(&identity.principal.to_string())),
            host: Some(identity.host),
            listener: None,
            method: Some(method_name(&identity.method).to_owned()),
            operation: bounded(action),
            resource_type: Some(resource_type.name()),
            resource_name: Some(bounded(resource_name)),
            outcome: if outcome.is_ok() { "done" } else { "failed" },
            error: outcome.err().map(bounded),
        }
    }

    /// The event as one JSON object (no newline), at wall time `wall_ms`.
    pub fn json_line(&self, wall_ms: i64) -> String {
        let line = Line {
            time: rfc3339_ms(wall_ms),
            event: self.kind.name(),
            outcome: self.outcome,
            principal: self.principal.as_deref(),
            host: self.host.map(|host| host.to_string()),
            listener: self.listener.map(AuditListener::name),
            method: self.method.as_deref(),
            operation: Some(&self.operation),
            resource_type: self.resource_type,
            resource_name: self.resource_name.as_deref(),
            error: self.error.as_deref(),
            kind: None,
            suppressed: None,
            dropped: None,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Writes the event to the node's log (target `ledge::audit`).
    pub fn trace(&self) {
        let host = self.host.map(|host| host.to_string());
        macro_rules! emit {
            ($level:ident, $message:literal) => {
                tracing::$level!(
                    target: "ledge::audit",
                    event = self.kind.name(),
                    outcome = self.outcome,
                    principal = self.principal.as_deref(),
                    host = host.as_deref(),
                    listener = self.listener.map(AuditListener::name),
                    method = self.method.as_deref(),
                    operation = %self.operation,
                    resource_type = self.resource_type,
                    resource_name = self.resource_name.as_deref(),
                    error = self.error.as_deref(),
                    $message
                )
            };
        }
        match self.kind {
            AuditKind::AuthenticationFailure => emit!(warn, "authentication failed"),
            AuditKind::AuthorizationDenied => emit!(info, "request denied"),
            AuditKind::AdminChange => emit!(info, "administrative change"),
        }
    }
}

/// The line's fields, in the order they are written; absent values are `null` so every
/// line of one kind has the same fields.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: &'a str,
    outcome: &'a str,
    principal: Option<&'a str>,
    host: Option<String>,
    listener: Option<&'a str>,
    method: Option<&'a str>,
    operation: Option<&'a str>,
    resource_type: Option<&'a str>,
    resource_name: Option<&'a str>,
    error: Option<&'a str>,
    /// Summaries only: the kind whose events were left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    /// Summaries only: how many the rate limit left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<u64>,
    /// Summaries only: how many lines the full queue dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
}

/// A summary line: `suppressed` events of `kind` left out by the rate limit, `dropped`
/// lines (of any kind) lost to a full queue, since the previous summary.
pub fn summary_line(
    wall_ms: i64,
    kind: Option<AuditKind>,
    suppressed: u64,
    dropped: u64,
) -> String {
    let line = Line {
        time: rfc3339_ms(wall_ms),
        event: "audit_suppressed",
        outcome: "suppressed",
        principal: None,
        host: None,
        listener: None,
        method: None,
        operation: None,
        resource_type: None,
        resource_name: None,
        error: None,
        kind: Some(kind.map_or("all", AuditKind::name)),
        suppressed: Some(suppressed),
        dropped: Some(dropped),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// `wall_ms` (milliseconds since the Unix epoch) as RFC 3339 UTC with milliseconds:
/// `2026-12-07T14:47:47.123Z`.
pub fn rfc3339_ms(wall_ms: i64) -> String {
    let seconds = wall_ms.div_euclid(1000);
    let millis = wall_ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// A token bucket: `rate` tokens a second, at most `rate` stored.
#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate),
            updated: now,
        }
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        self.updated = now;
    }

    fn has_token(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }

    fn is_full(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate)
    }
}

/// Decides which events are written (pure: time is passed in). See the module
/// documentation for the buckets.
#[derive(Debug)]
pub struct AuditLimiter {
    rate: u32,
    source_rate: u32,
    kinds: [Bucket; 3],
    sources: HashMap<(Option<String>, Option<IpAddr>), Bucket>,
    suppressed: [u64; 3],
}

impl AuditLimiter {
    /// Full buckets at `now`; rates of zero are taken as one.
    pub fn new(
        events_per_second_max: u32,
        source_events_per_second_max: u32,
        now: Instant,
    ) -> Self {
        let rate = events_per_second_max.max(1);
        Self {
            rate,
            source_rate: source_events_per_second_max.max(1),
            kinds: std::array::from_fn(|_| Bucket::full(rate, now)),
            sources: HashMap::new(),
            suppressed: [0; 3],
        }
    }

    /// Whether `event` is written at `now` (it takes a token from each of its buckets), or
    /// suppressed (counted).
    pub fn admit(&mut self, event: &AuditEvent, now: Instant) -> bool {
        let index = event.kind.index();
        let kind_ok = self.kinds[index].has_token(self.rate, now);
        let source = (event.kind == AuditKind::AuthenticationFailure)
            .then(|| (event.principal.clone(), event.host));
        let source_ok = match &source {
            Some(key) => self.source_has_token(key, now),
            None => true,
        };
        if !(kind_ok && source_ok) {
            self.suppressed[index] = self.suppressed[index].saturating_add(1);
            return false;
        }
        self.kinds[index].take();
        if let Some(key) = source
            && let Some(bucket) = self.sources.get_mut(&key)
        {
            bucket.take();
        }
        true
    }

    fn source_has_token(&mut self, key: &(Option<String>, Option<IpAddr>), now: Instant) -> bool {
        let rate = self.source_rate;
        if let Some(bucket) = self.sources.get_mut(key) {
            return bucket.has_token(rate, now);
        }
        if self.sources.len() >= AUDIT_SOURCES_TRACKED_MAX {
            // A full bucket says nothing a missing one does not.
            self.sources.retain(|_, bucket| !bucket.is_full(rate, now));
        }
        if self.sources.len() < AUDIT_SOURCES_TRACKED_MAX {
            self.sources.insert(key.clone(), Bucket::full(rate, now));
        }
        true
    }

    /// How many events of each kind were suppressed since the previous call (kinds with
    /// none are left out); the counts start again from zero.
    pub fn take_suppressed(&mut self) -> Vec<(AuditKind, u64)> {
        AuditKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let count = std::mem::take(&mut self.suppressed[kind.index()]);
                (count > 0).then_some((kind, count))
            })
            .collect()
    }

    /// How many sources are tracked now (tests).
    pub fn sources_tracked(&self) -> usize {
        self.sources.len()
    }
}

/// Why the audit log could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum AuditOpenError {
    /// `audit.log` could not be created or opened for appending.
    #[error("security.audit_log: cannot open {}: {cause}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("security.audit_log: cannot start the audit log writer: {0}")]
    Thread(std::io::Error),
}

/// The receiving end of an [`AuditLog`]'s queue: the file writer's, or a test's.
#[derive(Debug)]
pub struct AuditQueue {
    receiver: Receiver<String>,
}

impl AuditQueue {
    /// The lines queued so far, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.receiver.try_iter().collect()
    }
}

/// The audit log's handle, shared by the listeners and [`Access`](super::access::Access)
/// (see the module documentation).
pub struct AuditLog {
    clock: Arc<dyn Clock>,
    limiter: Mutex<AuditLimiter>,
    /// The file writer's queue; `None`: the file is off, events go to the node's log only.
    queue: Option<SyncSender<String>>,
    /// Lines the full queue dropped since the previous summary.
    dropped: AtomicU64,
    settings: AuditSettings,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// An audit log that writes to the node's log only (no file).
    pub fn tracing_only(settings: &AuditSettings, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        Self {
            limiter: Mutex::new(AuditLimiter::new(
                settings.events_per_second_max,
                settings.source_events_per_second_max,
                now,
            )),
            clock,
            queue: None,
            dropped: AtomicU64::new(0),
            settings: settings.clone(),
        }
    }

    /// An audit log whose lines also go to the returned queue (at most
    /// `settings.queue_events_max` waiting).
    pub fn with_queue(settings: &AuditSettings, clock: Arc<dyn Clock>) -> (Self, AuditQueue) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(settings.queue_events_max.max(1));
        let mut log = Self::tracing_only(settings, clock);
        log.queue = Some(sender);
        (log, AuditQueue { receiver })
    }

    /// The node's audit log: `<data_dir>/audit.log` (unless `settings.file` is off or the
    /// data directory is read-only), written by a thread of its own; suppressed events are
    /// summed up every `settings.summary_interval` by a task on `clock` (needs a tokio
    /// runtime). The file is created now, mode 0600, so a mistake shows at start.
    pub fn start(
        settings: &AuditSettings,
        data_dir: &Path,
        read_only: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, AuditOpenError> {
        let log = if settings.file && !read_only {
            let path = data_dir.join(AUDIT_LOG_FILE);
            let writer = FileWriter::open(path, settings.file_bytes_max)?;
            let (log, queue) = Self::with_queue(settings, clock);
            std::thread::Builder::new()
                .name("ledge-audit".into())
                .spawn(move || writer.run(&queue.receiver))
                .map_err(AuditOpenError::Thread)?;
            log
        } else {
            if settings.file {
                tracing::warn!(
                    "read-only data directory: the audit log goes to the node's log only, not to {AUDIT_LOG_FILE}"
                );
            }
            Self::tracing_only(settings, clock)
        };
        let log = Arc::new(log);
        let weak = Arc::downgrade(&log);
        tokio::spawn(summaries(
            weak,
            Arc::clone(&log.clock),
            settings.summary_interval,
        ));
        Ok(log)
    }

    /// Records `event` unless the rate limit suppresses it: to the node's log and the
    /// queue. Never waits.
    pub fn record(&self, event: &AuditEvent) {
        let now = self.clock.now();
        let admitted = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(event, now);
        if !admitted {
            return;
        }
        event.trace();
        self.enqueue(event.json_line(self.clock.wall_time_ms()));
    }

    /// Writes one summary line per kind that had events suppressed since the previous
    /// summary (and how many lines the full queue dropped); the summary task calls it every
    /// `security.audit_summary_interval_ms`.
    pub fn summarize(&self) {
        let suppressed = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_suppressed();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let wall_ms = self.clock.wall_time_ms();
        let mut lines = Vec::new();
        for (index, (kind, count)) in suppressed.iter().enumerate() {
            tracing::warn!(
                target: "ledge::audit",
                event = "audit_suppressed",
                kind = kind.name(),
                suppressed = count,
                "audit events suppressed by security.audit_events_per_second_max"
            );
            // The queue's drops are told once, on the first line.
            let dropped = if index == 0 { dropped } else { 0 };
            lines.push(summary_line(wall_ms, Some(*kind), *count, dropped));
        }
        if suppressed.is_empty() && dropped > 0 {
            lines.push(summary_line(wall_ms, None, 0, dropped));
        }
        if dropped > 0 {
            tracing::warn!(
                target: "ledge::audit",
                dropped,
                "audit lines dropped: the audit log writer fell behind (security.audit_queue_events_max)"
            );
        }
        for line in lines {
            self.enqueue(line);
        }
    }

    fn enqueue(&self, line: String) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer is gone (it never stops on its own): nothing to write to.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }
}

/// Records `event` through `log`, or to the node's log only (unlimited) when there is no
/// audit log (tests, the simulator).
pub fn record(log: Option<&AuditLog>, event: &AuditEvent) {
    match log {
        Some(log) => log.record(event),
        None => event.trace(),
    }
}

/// Calls [`AuditLog::summarize`] every `interval` of `clock`'s time while the log lives.
async fn summaries(log: Weak<AuditLog>, clock: Arc<dyn Clock>, interval: Duration) {
    loop {
        crate::clock::sleep(&*clock, interval).await;
        let Some(log) = log.upgrade() else {
            return;
        };
        log.summarize();
    }
}

/// Appends lines to `audit.log`, rotating it at the byte bound; runs on its own thread.
#[derive(Debug)]
pub struct FileWriter {
    path: PathBuf,
    rotated: PathBuf,
    bytes_max: u64,
    file: Option<std::fs::File>,
    size: u64,
    /// A write failed and was logged; the next failure is not (until one succeeds).
    failing: bool,
}

fn open_append(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let metadata = file.metadata()?;
    // A file made earlier with a wider mode is narrowed: the log names who did what.
    if metadata.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok((file, metadata.len()))
}

impl FileWriter {
    /// Opens (creates, mode 0600) `path` for appending; it rotates to `path` + `.1` before
    /// it would pass `bytes_max`.
    pub fn open(path: PathBuf, bytes_max: u64) -> Result<Self, AuditOpenError> {
        let (file, size) = open_append(&path).map_err(|cause| AuditOpenError::Open {
            path: path.clone(),
            cause,
        })?;
        let mut rotated = path.clone().into_os_string();
        rotated.push(".1");
        Ok(Self {
            path,
            rotated: PathBuf::from(rotated),
            bytes_max,
            file: Some(file),
            size,
            failing: false,
        })
    }

    /// Writes lines from `queue` until every sender is gone.
    pub fn run(mut self, queue: &Receiver<String>) {
        while let Ok(line) = queue.recv() {
            self.write_line(&line);
        }
    }

    /// Appends `line` and a newline, rotating first if it would pass the bound. An error is
    /// logged once (until a write succeeds again); the file is reopened for the next line.
    pub fn write_line(&mut self, line: &str) {
        match self.try_write(line) {
            Ok(()) => {
                if self.failing {
                    tracing::info!(path = %self.path.display(), "audit log writable again");
                    self.failing = false;
                }
            }
            Err(error) => {
                if !self.failing {
                    tracing::error!(path = %self.path.display(), %error, "cannot write the audit log; events go to the node's log only until it can");
                    self.failing = true;
                }
                self.file = None;
            }
        }
    }

    fn try_write(&mut self, line: &str) -> std::io::Result<()> {
        let bytes = u64::try_from(line.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        if self.file.is_none() {
            let (file, size) = open_append(&self.path)?;
            self.file = Some(file);
            self.size = size;
        }
        if self.size > 0 && self.size.saturating_add(bytes) > self.bytes_max {
            self.file = None;
            std::fs::rename(&self.path, &self.rotated)?;
            let (file, size) = open_append(&self.path)?;
            self.file = Some(file);
            self.size = size;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("audit log not open"));
        };
        let mut buffer = Vec::with_capacity(line.len() + 1);
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        file.write_all(&buffer)?;
        self.size = self.size.saturating_add(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

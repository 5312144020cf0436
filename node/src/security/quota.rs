//! Client quotas (issue 15): produce and fetch bytes per second per user principal, with
//! Kafka's rate and throttle arithmetic (KIP-13, KIP-219), and the per-principal connection
//! limit.
//!
//! The values are stored in the security store ([`ClientQuotas`] inside
//! `security/records.rs`'s `SecurityData`): a user's own `producer_byte_rate` /
//! `consumer_byte_rate`, else the default user's (`<default>`, Kafka's `--entity-default`),
//! else unlimited ([`ClientQuotas::quota_for`]).
//!
//! The rate is Kafka's `Rate` over a `SampledStat` ([`ByteRate`]): `quota.windows` samples of
//! `quota.window_seconds` each (Kafka's `quota.window.num` = 11 and
//! `quota.window.size.seconds` = 1). A sample starts at the record that opens it; samples
//! older than all the windows together are reset before each measurement; the rate divides
//! the bytes of the live samples by the time since the oldest sample started, counted as at
//! least `windows - 1` whole windows (so a first burst is not measured over a few
//! milliseconds).
//!
//! Throttle time (Kafka's `QuotaUtils.throttleTime`, used by `ClientQuotaManager`): once a
//! record makes the rate exceed the quota, `(rate - quota) / quota * window`, rounded to
//! milliseconds, where `window` is the time the rate was measured over: how long the client
//! must send nothing for its rate to fall back to the quota. Ledge bounds it by all the
//! windows together (11 s by default): by then every sample has expired and the rate is zero,
//! so a longer wait never helps (Kafka leaves byte-rate throttles unbounded).
//!
//! Memory: at most `quota.principals_tracked_max` (principal, produce/fetch) rates are kept;
//! a new one beyond evicts the one idle longest. Only principals that have a quota are
//! tracked. Pure: time is passed in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Default `quota.windows`: Kafka's `quota.window.num`.
pub const QUOTA_WINDOWS_DEFAULT: u32 = 11;
/// Default `quota.window_seconds`: Kafka's `quota.window.size.seconds`.
pub const QUOTA_WINDOW_SECONDS_DEFAULT: u64 = 1;
/// Most `quota.windows`.
pub const QUOTA_WINDOWS_MAX: u32 = 1_000;
/// Most `quota.window_seconds`.
pub const QUOTA_WINDOW_SECONDS_MAX: u64 = 3_600;
/// Default `quota.principals_tracked_max`: rates kept at once (one per principal and
/// direction), about 300 bytes each.
pub const PRINCIPALS_TRACKED_MAX_DEFAULT: usize = 10_000;
/// Default `security.connections_per_principal_max`: connections one authenticated principal
/// may hold on the node (QUIC and Kafka together); 0 means unlimited.
pub const CONNECTIONS_PER_PRINCIPAL_MAX_DEFAULT: usize = 256;

/// Kafka's name of the produce quota key.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Kafka's name of the fetch quota key.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// How Kafka shows the default entity's name (`<default>`).
pub const DEFAULT_ENTITY_NAME: &str = "<default>";

/// Which bytes a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuotaKind {
    /// Produce request bytes (`producer_byte_rate`).
    Produce,
    /// Fetch response bytes (`consumer_byte_rate`).
    Fetch,
}

impl QuotaKind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::Produce, Self::Fetch];

    /// Kafka's config key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Produce => PRODUCER_BYTE_RATE,
            Self::Fetch => CONSUMER_BYTE_RATE,
        }
    }

    /// The kind of a Kafka config key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.key() == key)
    }
}

/// Changes to one entity's quotas: each key set to bytes per second, or removed (`None`).
pub type QuotaChanges = Vec<(QuotaKind, Option<u64>)>;

/// One entity's quotas in bytes per second; `None`: not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaValues {
    /// `producer_byte_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_byte_rate: Option<u64>,
    /// `consumer_byte_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_byte_rate: Option<u64>,
}

impl QuotaValues {
    /// The value of `kind`.
    pub fn get(&self, kind: QuotaKind) -> Option<u64> {
        match kind {
            QuotaKind::Produce => self.producer_byte_rate,
            QuotaKind::Fetch => self.consumer_byte_rate,
        }
    }

    /// Sets (or with `None` removes) the value of `kind`.
    pub fn set(&mut self, kind: QuotaKind, value: Option<u64>) {
        match kind {
            QuotaKind::Produce => self.producer_byte_rate = value,
            QuotaKind::Fetch => self.consumer_byte_rate = value,
        }
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.producer_byte_rate.is_none() && self.consumer_byte_rate.is_none()
    }

    /// The values set, as Kafka's `(key, value)` pairs.
    pub fn entries(&self) -> Vec<(QuotaKind, u64)> {
        QuotaKind::ALL
            .into_iter()
            .filter_map(|kind| self.get(kind).map(|value| (kind, value)))
            .collect()
    }
}

/// Whose quota: a user (the principal's name, `alice` for `User:alice`) or the default user.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuotaEntity {
    /// One user.
    User(String),
    /// Every user without its own quota (`<default>`).
    DefaultUser,
}

impl std::fmt::Display for QuotaEntity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(name) => write!(formatter, "user {name:?}"),
            Self::DefaultUser => formatter.write_str("the default user"),
        }
    }
}

/// Every stored quota: per user, and the default user's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuotas {
    /// Quotas by user name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, QuotaValues>,
    /// The default user's quotas.
    #[serde(default, skip_serializing_if = "QuotaValues::is_empty")]
    pub default_user: QuotaValues,
}

impl ClientQuotas {
    /// The entity's values (empty when none is set).
    pub fn values(&self, entity: &QuotaEntity) -> QuotaValues {
        match entity {
            QuotaEntity::User(name) => self.users.get(name).copied().unwrap_or_default(),
            QuotaEntity::DefaultUser => self.default_user,
        }
    }

    /// Sets the entity's values (empty values remove the entity).
    pub fn put(&mut self, entity: QuotaEntity, values: QuotaValues) {
        match entity {
            QuotaEntity::User(name) => {
                if values.is_empty() {
                    self.users.remove(&name);
                } else {
                    self.users.insert(name, values);
                }
            }
            QuotaEntity::DefaultUser => self.default_user = values,
        }
    }

    /// Every entity with a value, the default user first.
    pub fn entities(&self) -> Vec<(QuotaEntity, QuotaValues)> {
        let default = (!self.default_user.is_empty())
            .then_some((QuotaEntity::DefaultUser, self.default_user));
        default
            .into_iter()
            .chain(
                self.users
                    .iter()
                    .map(|(name, values)| (QuotaEntity::User(name.clone()), *values)),
            )
            .collect()
    }

    /// How many entities have a value.
    pub fn len(&self) -> usize {
        self.users.len() + usize::from(!self.default_user.is_empty())
    }

    /// Whether no quota is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The quota of `kind` for the user `name`: its own, else the default user's, else
    /// `None` (unlimited), as Kafka's `DefaultQuotaCallback` for user quotas.
    pub fn quota_for(&self, name: &str, kind: QuotaKind) -> Option<u64> {
        self.users
            .get(name)
            .and_then(|values| values.get(kind))
            .or_else(|| self.default_user.get(kind))
    }
}

/// The rate's settings (see docs/OPERATIONS.md, `[quota]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaSettings {
    /// `quota.window_seconds`: one sample's length.
    pub window: Duration,
    /// `quota.windows`: how many samples the rate spans.
    pub windows: u32,
    /// `quota.principals_tracked_max`: most rates kept at once.
    pub principals_tracked_max: usize,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(QUOTA_WINDOW_SECONDS_DEFAULT),
            windows: QUOTA_WINDOWS_DEFAULT,
            principals_tracked_max: PRINCIPALS_TRACKED_MAX_DEFAULT,
        }
    }
}

impl QuotaSettings {
    fn samples(&self) -> usize {
        self.windows.max(1) as usize
    }

    fn window(&self) -> Duration {
        self.window.max(Duration::from_millis(1))
    }

    /// All the windows together: the longest throttle, and the age at which a sample expires.
    pub fn span(&self) -> Duration {
        self.window().saturating_mul(self.windows.max(1))
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    start: Instant,
    bytes: f64,
}

/// Kafka's `Rate` over a `SampledStat` for one principal and direction.
#[derive(Clone, Debug)]
pub struct ByteRate {
    samples: Vec<Sample>,
    current: usize,
}

impl ByteRate {
    /// A rate with nothing recorded.
    pub fn new() -> Self {
        Self {
            samples: Vec::new(),
            current: 0,
        }
    }

    /// Adds `bytes` at `now` (Kafka's `SampledStat.record`): into the current sample, or a
    /// new one when the current one is a window old.
    pub fn record(&mut self, settings: &QuotaSettings, bytes: u64, now: Instant) {
        let window = settings.window();
        if self.samples.is_empty() {
            self.samples.push(Sample {
                start: now,
                bytes: 0.0,
            });
            self.current = 0;
        }
        let complete = self
            .samples
            .get(self.current)
            .is_none_or(|sample| now.saturating_duration_since(sample.start) >= window);
        if complete {
            self.current = (self.current + 1) % settings.samples();
            let fresh = Sample {
                start: now,
                bytes: 0.0,
            };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
                self.current = self.samples.len() - 1;
            } else {
                self.samples[self.current] = fresh;
            }
        }
        if let Some(sample) = self.samples.get_mut(self.current) {
            sample.bytes += bytes as f64;
        }
    }

    /// The rate at `now` in bytes per second, and the time it is measured over (Kafka's
    /// `Rate.measure` and `Rate.windowSize`).
    pub fn measure(&mut self, settings: &QuotaSettings, now: Instant) -> (f64, Duration) {
        let span = settings.span();
        for sample in &mut self.samples {
            if now.saturating_duration_since(sample.start) >= span {
                *sample = Sample {
                    start: now,
                    bytes: 0.0,
                };
            }
        }
        let total: f64 = self.samples.iter().map(|sample| sample.bytes).sum();
        let oldest = self
            .samples
            .iter()
            .map(|sample| sample.start)
            .min()
            .unwrap_or(now);
        let window = settings.window();
        let mut elapsed = now.saturating_duration_since(oldest);
        let full_windows = (elapsed.as_nanos() / window.as_nanos().max(1)) as u64;
        let min_full_windows = u64::from(settings.windows.max(1) - 1);
        if full_windows < min_full_windows {
            let missing = u32::try_from(min_full_windows - full_windows).unwrap_or(u32::MAX);
            elapsed = elapsed.saturating_add(window.saturating_mul(missing));
        }
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { total / seconds } else { 0.0 };
        (rate, elapsed)
    }

    fn last_activity(&self) -> Option<Instant> {
        self.samples.iter().map(|sample| sample.start).max()
    }
}

impl Default for ByteRate {
    fn default() -> Self {
        Self::new()
    }
}

/// Kafka's throttle time for a rate `observed` over `quota` measured over `window`:
/// `(observed - quota) / quota * window`, rounded; zero within the quota; at most `bound`.
pub fn throttle_time(observed: f64, quota: f64, window: Duration, bound: Duration) -> Duration {
    if quota <= 0.0 || observed <= quota {
        return Duration::ZERO;
    }
    let millis = ((observed - quota) / quota * window.as_secs_f64() * 1000.0).round();
    let bound_ms = bound.as_millis() as f64;
    Duration::from_millis(millis.min(bound_ms).max(0.0) as u64)
}

/// The rates of the principals with a quota, bounded in number.
#[derive(Debug)]
pub struct QuotaTracker {
    settings: QuotaSettings,
    rates: HashMap<(String, QuotaKind), ByteRate>,
}

impl QuotaTracker {
    /// No rate yet.
    pub fn new(settings: QuotaSettings) -> Self {
        Self {
            settings,
            rates: HashMap::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &QuotaSettings {
        &self.settings
    }

    /// How many rates are kept.
    pub fn tracked(&self) -> usize {
        self.rates.len()
    }

    /// Records `bytes` of `kind` for the user `name` at `now` against `quota` (bytes per
    /// second, `None`: unlimited, nothing recorded) and answers how long the client must
    /// wait (zero within the quota), as Kafka's `ClientQuotaManager.recordAndGetThrottleTimeMs`.
    pub fn record(
        &mut self,
        name: &str,
        kind: QuotaKind,
        bytes: u64,
        quota: Option<u64>,
        now: Instant,
    ) -> Duration {
        let Some(quota) = quota else {
            // No quota (any more): forget its rate.
            self.rates.remove(&(name.to_owned(), kind));
            return Duration::ZERO;
        };
        let key = (name.to_owned(), kind);
        if !self.rates.contains_key(&key) {
            self.make_room(now);
        }
        let settings = self.settings;
        let rate = self.rates.entry(key).or_default();
        rate.record(&settings, bytes, now);
        let (observed, window) = rate.measure(&settings, now);
        throttle_time(observed, quota as f64, window, settings.span())
    }

    /// Evicts the rate idle longest while the tracker is full.
    fn make_room(&mut self, now: Instant) {
        let max = self.settings.principals_tracked_max.max(1);
        while self.rates.len() >= max {
            let idlest = self
                .rates
                .iter()
                .min_by_key(|(_, rate)| rate.last_activity().unwrap_or(now))
                .map(|(key, _)| key.clone());
            match idlest {
                Some(key) => {
                    self.rates.remove(&key);
                }
                None => return,
            }
        }
    }
}

/// A principal holds its limit of connections already (`security.connections_per_principal_max`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{principal} holds {held} connections to this node already, its limit of {max} (security.connections_per_principal_max)"
)]
pub struct PrincipalLimitReached {
    /// The principal, `User:alice`.
    pub principal: String,
    /// Connections it holds.
    pub held: usize,
    /// The limit.
    pub max: usize,
}

/// One connection's slot of its principal's share; given back when dropped.
pub type PrincipalPermit = crate::transport::address_limit::AddressPermit<String>;

/// The node's client quotas at work, shared by the QUIC and Kafka listeners: byte rates per
/// principal against the security store's quotas, and connections per principal.
pub struct ClientQuotaManager {
    tracker: std::sync::Mutex<QuotaTracker>,
    store: Option<std::sync::Arc<super::store::SecurityStore>>,
    /// `security.connections_per_principal_max`; `None`: unlimited.
    connections: Option<crate::transport::address_limit::AddressLimit<String>>,
    /// Exempt from the connection limit (`security.super_users`, as `Type:name`).
    super_users: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for ClientQuotaManager {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientQuotaManager")
            .field("super_users", &self.super_users)
            .finish_non_exhaustive()
    }
}

impl ClientQuotaManager {
    /// Quotas read from `store` (none without one) with `settings`; at most
    /// `connections_per_principal_max` connections per authenticated principal (0:
    /// unlimited), `super_users` (`Type:name`) exempt.
    pub fn new(
        settings: QuotaSettings,
        store: Option<std::sync::Arc<super::store::SecurityStore>>,
        connections_per_principal_max: usize,
        super_users: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            tracker: std::sync::Mutex::new(QuotaTracker::new(settings)),
            store,
            connections: (connections_per_principal_max > 0).then(|| {
                crate::transport::address_limit::AddressLimit::new(connections_per_principal_max)
            }),
            super_users: super_users.into_iter().collect(),
        }
    }

    /// Records `bytes` of `kind` for `identity`'s principal at `now` and answers the
    /// throttle time (zero without a quota or within it).
    pub fn record(
        &self,
        identity: &super::identity::ClientIdentity,
        kind: QuotaKind,
        bytes: u64,
        now: Instant,
    ) -> Duration {
        let name = identity.principal.name();
        let quota = self
            .store
            .as_ref()
            .and_then(|store| store.quota_for(name, kind));
        if quota.is_none() {
            // The common case: no lock taken unless a rate may have to be forgotten.
            let mut tracker = self
                .tracker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if tracker.tracked() > 0 {
                tracker.record(name, kind, bytes, None, now);
            }
            return Duration::ZERO;
        }
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(name, kind, bytes, quota, now)
    }

    /// Takes a connection slot for `identity`'s principal once it is authenticated: `None`
    /// when it is not counted (anonymous, a super user, no limit), or the error when the
    /// principal holds its limit already.
    pub fn connect(
        &self,
        identity: &super::identity::ClientIdentity,
    ) -> Result<Option<PrincipalPermit>, PrincipalLimitReached> {
        let Some(limit) = &self.connections else {
            return Ok(None);
        };
        let principal = identity.principal.to_string();
        if !identity.is_authenticated() || self.super_users.contains(&principal) {
            return Ok(None);
        }
        limit
            .try_acquire(principal.clone())
            .map(Some)
            .map_err(|reached| PrincipalLimitReached {
                principal,
                held: reached.held,
                max: reached.max,
            })
    }

    /// Connections the principal (`Type:name`) holds now.
    pub fn connections_of(&self, principal: &str) -> usize {
        self.connections
            .as_ref()
            .map_or(0, |limit| limit.held(&principal.to_owned()))
    }
}

#[cfg(test)]
mod tests;

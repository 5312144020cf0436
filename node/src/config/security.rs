//! The `[security]` section: client certificates, principal mapping, SASL mechanisms,
//! anonymous access, authorization and super users (issue 15). Every value is checked when
//! the file is read, and an error names the key; see docs/OPERATIONS.md.
//!
//! [`SecurityConfig::anonymous_access`] applies the start-up rule for anonymous clients
//! (listeners on loopback only, unless `allow_anonymous` says otherwise); it is pure, so the
//! node calls it with the addresses it is about to serve on before it touches its data
//! directory.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::ConfigError;
use crate::security::audit::{
    AUDIT_LOG_BYTES_MAX_MIN, AUDIT_QUEUE_EVENTS_MAX_MAX, AUDIT_SUMMARY_INTERVAL_MS_MAX,
    AUDIT_SUMMARY_INTERVAL_MS_MIN, AuditSettings,
};
use crate::security::principal::{KafkaPrincipal, PrincipalMappingRules};
use crate::security::scram::ScramMechanism;

/// Default `principal_mapping_rules`: a subject of exactly `CN=name` (what
/// `ledge-node cert issue --name name` writes) is `User:name`; any other subject is its full
/// RFC 2253 distinguished name, as Kafka's `DEFAULT`. Kafka's own default is `DEFAULT` alone:
/// this is the one difference, so issued certificates get short principals.
pub const PRINCIPAL_MAPPING_RULES_DEFAULT: &str = "RULE:^CN=([^,]+)$/$1/,DEFAULT";

/// Whether QUIC and the Kafka TLS listener ask for client certificates
/// (`[security] client_auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates are asked for (Kafka's `ssl.client.auth=none`).
    #[default]
    None,
    /// A certificate is verified if the client presents one; a client without one is
    /// anonymous (Kafka's `requested`).
    Optional,
    /// Every client must present a certificate that verifies, or the handshake fails
    /// (Kafka's `required`).
    Required,
}

impl ClientAuth {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

impl FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(Self::None),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!(
                "{other:?} must be \"none\", \"optional\" or \"required\""
            )),
        }
    }
}

/// A SASL mechanism a client may use (`[security] sasl_mechanisms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    Scram(ScramMechanism),
    /// `PLAIN`, offered and accepted on TLS connections only.
    Plain,
}

impl SaslMechanism {
    /// The SASL name, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scram(mechanism) => mechanism.name(),
            Self::Plain => "PLAIN",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "PLAIN" {
            return Ok(Self::Plain);
        }
        ScramMechanism::from_name(text)
            .map(Self::Scram)
            .ok_or_else(|| {
                format!(
                    "unknown SASL mechanism {text:?}; known: \"SCRAM-SHA-256\", \"SCRAM-SHA-512\", \"PLAIN\" (names are case-sensitive)"
                )
            })
    }
}

/// Default `sasl_mechanisms`: both SCRAM hashes and PLAIN.
pub const SASL_MECHANISMS_DEFAULT: [SaslMechanism; 3] = [
    SaslMechanism::Scram(ScramMechanism::Sha256),
    SaslMechanism::Scram(ScramMechanism::Sha512),
    SaslMechanism::Plain,
];

/// Largest `connections_per_principal_max` (as `connections_max`'s own limit).
pub const CONNECTIONS_PER_PRINCIPAL_MAX_LIMIT: usize = 1_000_000;

/// The `[security]` section, checked.
#[derive(Clone, Debug)]
pub struct SecurityConfig {
    /// `client_auth`: client certificates on QUIC and the Kafka TLS listener.
    pub client_auth: ClientAuth,
    /// `client_ca`: the CA client certificates must lead to (PEM, one or more
    /// certificates); `None`: the node's CA (`<data-dir>/tls/ca.pem` for the development CA,
    /// `cluster.ca_file` in a cluster). Relative paths are relative to the config file.
    pub client_ca: Option<PathBuf>,
    /// `client_crls`: PEM certificate revocation lists checked for client certificates.
    pub client_crls: Vec<PathBuf>,
    /// `principal_mapping_rules`, parsed.
    pub principal_mapping_rules: PrincipalMappingRules,
    /// `sasl_mechanisms`: what a client may use; empty turns SASL off.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// `allow_anonymous`; `None`: anonymous clients only while every listener is on
    /// loopback ([`SecurityConfig::anonymous_access`]).
    pub allow_anonymous: Option<bool>,
    /// `authorization`; `None`: on exactly when anonymous clients are not allowed
    /// ([`SecurityConfig::authorization_enabled`]).
    pub authorization: Option<bool>,
    /// `super_users`: principals every authorization check allows.
    pub super_users: Vec<KafkaPrincipal>,
    /// `users_max`: most SASL users the node stores
    /// (default [`USERS_MAX_DEFAULT`](crate::security::records::USERS_MAX_DEFAULT)).
    pub users_max: usize,
    /// `acls_max`: most ACL bindings the node stores
    /// (default [`DEFAULT_MAX_ACLS`](crate::security::acl::DEFAULT_MAX_ACLS)).
    pub acls_max: usize,
    /// `audit_log`, `audit_log_bytes_max`, `audit_events_per_second_max`,
    /// `audit_source_events_per_second_max`, `audit_summary_interval_ms`,
    /// `audit_queue_events_max`: the audit log (`security/audit.rs`).
    pub audit: AuditSettings,
    /// `connections_per_principal_max`: connections one authenticated principal may hold
    /// on the node, QUIC and Kafka together; 0 is unlimited; super users are exempt.
    pub connections_per_principal_max: usize,
}

/// The largest `users_max` and `acls_max` accepted: every user and binding is held in memory
/// and in one file (`security.json`) rewritten on each change.
pub const SECURITY_ENTRIES_MAX: usize = 1_000_000;

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            client_auth: ClientAuth::None,
            client_ca: None,
            client_crls: Vec::new(),
            principal_mapping_rules: PrincipalMappingRules::parse(PRINCIPAL_MAPPING_RULES_DEFAULT)
                .expect("the default principal mapping rules parse"),
            sasl_mechanisms: SASL_MECHANISMS_DEFAULT.to_vec(),
            allow_anonymous: None,
            authorization: None,
            super_users: Vec::new(),
            users_max: crate::security::records::USERS_MAX_DEFAULT,
            acls_max: crate::security::acl::DEFAULT_MAX_ACLS,
            audit: AuditSettings::default(),
            connections_per_principal_max:
                crate::security::quota::CONNECTIONS_PER_PRINCIPAL_MAX_DEFAULT,
        }
    }
}

/// The `[security]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SecuritySection {
    client_auth: Option<String>,
    client_ca: Option<PathBuf>,
    client_crls: Option<Vec<PathBuf>>,
    principal_mapping_rules: Option<String>,
    sasl_mechanisms: Option<Vec<String>>,
    allow_anonymous: Option<bool>,
    authorization: Option<bool>,
    super_users: Option<Vec<String>>,
    users_max: Option<usize>,
    acls_max: Option<usize>,
    audit_log: Option<bool>,
    audit_log_bytes_max: Option<u64>,
    audit_events_per_second_max: Option<u32>,
    audit_source_events_per_second_max: Option<u32>,
    audit_summary_interval_ms: Option<u64>,
    audit_queue_events_max: Option<usize>,
    connections_per_principal_max: Option<usize>,
}

impl SecuritySection {
    /// Checks every key; `origin` names the file in errors.
    pub(super) fn settings(self, origin: &str) -> Result<SecurityConfig, ConfigError> {
        let error = |key: &str, message: String| {
            ConfigError(format!("{origin}: security.{key}: {message}"))
        };
        let mut config = SecurityConfig::default();
        if let Some(value) = self.client_auth {
            config.client_auth = value
                .parse()
                .map_err(|message| error("client_auth", message))?;
        }
        if let Some(path) = self.client_ca {
            if path.as_os_str().is_empty() {
                return Err(error("client_ca", "must not be empty".into()));
            }
            config.client_ca = Some(path);
        }
        if let Some(paths) = self.client_crls {
            if paths.iter().any(|path| path.as_os_str().is_empty()) {
                return Err(error("client_crls", "a path must not be empty".into()));
            }
            config.client_crls = paths;
        }
        if let Some(rules) = self.principal_mapping_rules {
            config.principal_mapping_rules = PrincipalMappingRules::parse(&rules)
                .map_err(|cause| error("principal_mapping_rules", cause.to_string()))?;
            if config.principal_mapping_rules.is_empty() {
                return Err(error(
                    "principal_mapping_rules",
                    "no rules: every client certificate would be refused; write DEFAULT for the full distinguished name".into(),
                ));
            }
        }
        if let Some(names) = self.sasl_mechanisms {
            let mut mechanisms = Vec::with_capacity(names.len());
            for name in &names {
                let mechanism: SaslMechanism = name
                    .parse()
                    .map_err(|message| error("sasl_mechanisms", message))?;
                if mechanisms.contains(&mechanism) {
                    return Err(error(
                        "sasl_mechanisms",
                        format!("{name:?} is listed twice"),
                    ));
                }
                mechanisms.push(mechanism);
            }
            config.sasl_mechanisms = mechanisms;
        }
        config.allow_anonymous = self.allow_anonymous;
        config.authorization = self.authorization;
        if let Some(users) = self.super_users {
            for user in &users {
                let principal: KafkaPrincipal = user.parse().map_err(
                    |cause: crate::security::principal::PrincipalParseError| {
                        error("super_users", cause.to_string())
                    },
                )?;
                if principal.principal_type().is_empty() || principal.name().is_empty() {
                    return Err(error(
                        "super_users",
                        format!("{user:?} needs a type and a name, like \"User:admin\""),
                    ));
                }
                config.super_users.push(principal);
            }
        }
        for (key, value, field) in [
            ("users_max", self.users_max, &mut config.users_max),
            ("acls_max", self.acls_max, &mut config.acls_max),
        ] {
            if let Some(value) = value {
                if !(1..=SECURITY_ENTRIES_MAX).contains(&value) {
                    return Err(error(
                        key,
                        format!("{value} is out of range 1..={SECURITY_ENTRIES_MAX}"),
                    ));
                }
                *field = value;
            }
        }
        if let Some(file) = self.audit_log {
            config.audit.file = file;
        }
        if let Some(bytes) = self.audit_log_bytes_max {
            if bytes < AUDIT_LOG_BYTES_MAX_MIN {
                return Err(error(
                    "audit_log_bytes_max",
                    format!("{bytes} is below the least, {AUDIT_LOG_BYTES_MAX_MIN} bytes"),
                ));
            }
            config.audit.file_bytes_max = bytes;
        }
        if let Some(rate) = self.audit_events_per_second_max {
            if rate == 0 {
                return Err(error(
                    "audit_events_per_second_max",
                    "must be at least 1 (audit_log = false turns the file off)".into(),
                ));
            }
            config.audit.events_per_second_max = rate;
        }
        if let Some(rate) = self.audit_source_events_per_second_max {
            if rate == 0 {
                return Err(error(
                    "audit_source_events_per_second_max",
                    "must be at least 1".into(),
                ));
            }
            config.audit.source_events_per_second_max = rate;
        }
        if config.audit.source_events_per_second_max > config.audit.events_per_second_max {
            return Err(error(
                "audit_source_events_per_second_max",
                format!(
                    "{} is more than audit_events_per_second_max ({}): one source could use every line",
                    config.audit.source_events_per_second_max, config.audit.events_per_second_max
                ),
            ));
        }
        if let Some(ms) = self.audit_summary_interval_ms {
            if !(AUDIT_SUMMARY_INTERVAL_MS_MIN..=AUDIT_SUMMARY_INTERVAL_MS_MAX).contains(&ms) {
                return Err(error(
                    "audit_summary_interval_ms",
                    format!(
                        "{ms} must be between {AUDIT_SUMMARY_INTERVAL_MS_MIN} and {AUDIT_SUMMARY_INTERVAL_MS_MAX}"
                    ),
                ));
            }
            config.audit.summary_interval = std::time::Duration::from_millis(ms);
        }
        if let Some(events) = self.audit_queue_events_max {
            if !(1..=AUDIT_QUEUE_EVENTS_MAX_MAX).contains(&events) {
                return Err(error(
                    "audit_queue_events_max",
                    format!("{events} must be between 1 and {AUDIT_QUEUE_EVENTS_MAX_MAX}"),
                ));
            }
            config.audit.queue_events_max = events;
        }
        if let Some(max) = self.connections_per_principal_max {
            if max > CONNECTIONS_PER_PRINCIPAL_MAX_LIMIT {
                return Err(error(
                    "connections_per_principal_max",
                    format!("{max} is above {CONNECTIONS_PER_PRINCIPAL_MAX_LIMIT}"),
                ));
            }
            config.connections_per_principal_max = max;
        }
        if config.allow_anonymous == Some(false)
            && config.client_auth == ClientAuth::None
            && config.sasl_mechanisms.is_empty()
        {
            return Err(ConfigError(format!(
                "{origin}: security.allow_anonymous = false, but no client can authenticate: client_auth = \"none\" and sasl_mechanisms is empty; set client_auth = \"required\" (or \"optional\"), or list SASL mechanisms"
            )));
        }
        Ok(config)
    }
}

/// A listener the node serves clients on, for the anonymous-access rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientListener {
    /// What it is, for messages: `QUIC`, `Kafka plaintext`, `Kafka TLS`.
    pub kind: &'static str,
    /// Where it binds.
    pub address: SocketAddr,
    /// Whether its TLS handshake requires a client certificate (`client_auth = "required"`
    /// on QUIC and Kafka TLS), so no anonymous client gets through it whatever the rule.
    pub certificate_required: bool,
}

/// Who may connect without authenticating, decided at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnonymousAccess {
    /// `allow_anonymous` unset and every listener on loopback: anonymous clients from this
    /// machine only.
    LoopbackOnly,
    /// `allow_anonymous = true`: anonymous clients on every listener.
    Everywhere,
    /// `allow_anonymous = false`: every connection must authenticate.
    Never,
}

impl AnonymousAccess {
    /// Whether a connection that proved nothing may send requests.
    pub fn allowed(&self) -> bool {
        !matches!(self, Self::Never)
    }
}

/// The node must not start: `allow_anonymous` is unset and a listener is not on loopback.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to start: the {} listener on {} is not on a loopback address and no authentication is configured, so anyone who can reach it could use the node anonymously; either set [security] allow_anonymous = true to allow that explicitly, or set allow_anonymous = false with client_auth = \"required\" (client certificates, see `ledge-node cert issue`) or SASL users; or listen on 127.0.0.1",
    listener.kind,
    listener.address
)]
pub struct AnonymousRefused {
    /// The first listener not on loopback.
    pub listener: ClientListener,
}

impl SecurityConfig {
    /// The start-up rule for anonymous clients over the listeners the node is about to serve
    /// (docs/OPERATIONS.md, "Security"): with `allow_anonymous` unset, anonymous clients are
    /// accepted only if every listener binds a loopback address, and a listener elsewhere
    /// refuses the start.
    pub fn anonymous_access(
        &self,
        listeners: &[ClientListener],
    ) -> Result<AnonymousAccess, AnonymousRefused> {
        match self.allow_anonymous {
            Some(true) => Ok(AnonymousAccess::Everywhere),
            Some(false) => Ok(AnonymousAccess::Never),
            None => match listeners
                .iter()
                .find(|listener| !listener.address.ip().is_loopback())
            {
                Some(listener) => Err(AnonymousRefused {
                    listener: listener.clone(),
                }),
                None => Ok(AnonymousAccess::LoopbackOnly),
            },
        }
    }

    /// Whether authorization checks run: `authorization`, or when unset, exactly when
    /// anonymous clients are not allowed.
    pub fn authorization_enabled(&self, access: &AnonymousAccess) -> bool {
        self.authorization.unwrap_or_else(|| !access.allowed())
    }

    /// Makes relative paths relative to `base` (the config file's directory).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(path) = &mut self.client_ca {
            *path = base.join(&*path);
        }
        for path in &mut self.client_crls {
            *path = base.join(&*path);
        }
    }
}

/// The one start-up line saying which listeners accept anonymous clients.
pub fn anonymous_access_summary(access: &AnonymousAccess, listeners: &[ClientListener]) -> String {
    let names = |listeners: &mut dyn Iterator<Item = &ClientListener>| {
        listeners
            .map(|listener| format!("{} {}", listener.kind, listener.address))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = names(&mut listeners.iter());
    let open = names(
        &mut listeners
            .iter()
            .filter(|listener| !listener.certificate_required),
    );
    match access {
        AnonymousAccess::Never => format!(
            "anonymous clients: refused on every listener ({all}); clients must authenticate"
        ),
        _ if open.is_empty() => {
            format!("anonymous clients: none, every listener requires a client certificate ({all})")
        }
        AnonymousAccess::LoopbackOnly => format!(
            "anonymous clients: loopback only, no authentication required ({open}); set [security] to serve other addresses"
        ),
        AnonymousAccess::Everywhere => format!(
            "anonymous clients: accepted on every listener that requires no client certificate ({open}) because [security] allow_anonymous = true"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    fn parse(text: &str) -> Result<SecurityConfig, String> {
        NodeConfig::from_toml(text, "t.toml")
            .map(|config| config.security)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = parse("").unwrap();
        assert_eq!(config.client_auth, ClientAuth::None);
        assert_eq!(config.client_ca, None);
        assert!(config.client_crls.is_empty());
        assert_eq!(
            config.principal_mapping_rules.to_string(),
            "[RULE:^CN=([^,]+)$/$1, DEFAULT]"
        );
        let names: Vec<_> = config.sasl_mechanisms.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]);
        assert_eq!(config.allow_anonymous, None);
        assert_eq!(config.authorization, None);
        assert!(config.super_users.is_empty());
        assert_eq!(config.audit, AuditSettings::default());
        assert!(config.audit.file);
        assert_eq!(config.audit.file_bytes_max, 64 * 1024 * 1024);
        assert_eq!(config.audit.events_per_second_max, 100);
        assert_eq!(config.audit.source_events_per_second_max, 10);
        assert_eq!(
            config.audit.summary_interval,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(config.audit.queue_events_max, 4096);
        assert_eq!(config.connections_per_principal_max, 256);
        // The default rules: an issued certificate's subject is a short user name, any other
        // subject is the whole distinguished name.
        let rules = &config.principal_mapping_rules;
        assert_eq!(
            rules.principal("CN=alice").unwrap().to_string(),
            "User:alice"
        );
        assert_eq!(
            rules.principal("CN=alice,O=Acme").unwrap().to_string(),
            "User:CN=alice,O=Acme"
        );
    }

    #[test]
    fn every_key_parses() {
        let config = parse(
            r#"
[security]
client_auth = "required"
client_ca = "clients-ca.pem"
client_crls = ["a.crl", "b.crl"]
principal_mapping_rules = "RULE:^CN=(.*?),OU=(.*)$/$1@$2/L,DEFAULT"
sasl_mechanisms = ["SCRAM-SHA-512"]
allow_anonymous = false
authorization = true
super_users = ["User:admin", "User:CN=ops,O=Acme"]
users_max = 50
acls_max = 2000
audit_log = false
audit_log_bytes_max = 1048576
audit_events_per_second_max = 50
audit_source_events_per_second_max = 5
audit_summary_interval_ms = 60000
audit_queue_events_max = 100
connections_per_principal_max = 0
"#,
        )
        .unwrap();
        assert_eq!(config.connections_per_principal_max, 0);
        assert_eq!(config.client_auth, ClientAuth::Required);
        assert_eq!(config.client_ca, Some(PathBuf::from("clients-ca.pem")));
        assert_eq!(config.client_crls.len(), 2);
        assert_eq!(
            config
                .principal_mapping_rules
                .apply("CN=Bob,OU=Ops")
                .unwrap(),
            "bob@ops"
        );
        assert_eq!(
            config.sasl_mechanisms,
            [SaslMechanism::Scram(ScramMechanism::Sha512)]
        );
        assert_eq!(config.allow_anonymous, Some(false));
        assert_eq!(config.authorization, Some(true));
        assert_eq!(config.super_users[1].name(), "CN=ops,O=Acme");
        assert_eq!((config.users_max, config.acls_max), (50, 2000));
        assert_eq!(
            config.audit,
            AuditSettings {
                file: false,
                file_bytes_max: 1_048_576,
                events_per_second_max: 50,
                source_events_per_second_max: 5,
                summary_interval: std::time::Duration::from_secs(60),
                queue_events_max: 100,
            }
        );
        // Empty list: SASL off.
        let config = parse("[security]\nsasl_mechanisms = []\n").unwrap();
        assert!(config.sasl_mechanisms.is_empty());
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (text, expected) in [
            (
                "[security]\nclient_auth = \"yes\"\n",
                "security.client_auth: \"yes\" must be \"none\", \"optional\" or \"required\"",
            ),
            ("[security]\nclient_auth = true\n", "client_auth"),
            (
                "[security]\nclient_ca = \"\"\n",
                "security.client_ca: must not be empty",
            ),
            (
                "[security]\nclient_crls = [\"\"]\n",
                "security.client_crls: a path must not be empty",
            ),
            ("[security]\nclient_crls = \"a.crl\"\n", "client_crls"),
            (
                "[security]\nprincipal_mapping_rules = \"RULE:(a/b\"\n",
                "security.principal_mapping_rules: invalid principal mapping rule",
            ),
            (
                "[security]\nprincipal_mapping_rules = \"RULE:^(.*)$/$/\"\n",
                "security.principal_mapping_rules: invalid principal mapping rule",
            ),
            (
                "[security]\nprincipal_mapping_rules = \"\"\n",
                "security.principal_mapping_rules: no rules",
            ),
            (
                "[security]\nsasl_mechanisms = [\"GSSAPI\"]\n",
                "security.sasl_mechanisms: unknown SASL mechanism \"GSSAPI\"",
            ),
            (
                "[security]\nsasl_mechanisms = [\"scram-sha-256\"]\n",
                "security.sasl_mechanisms: unknown SASL mechanism \"scram-sha-256\"",
            ),
            (
                "[security]\nsasl_mechanisms = [\"PLAIN\", \"PLAIN\"]\n",
                "security.sasl_mechanisms: \"PLAIN\" is listed twice",
            ),
            ("[security]\nallow_anonymous = \"no\"\n", "allow_anonymous"),
            ("[security]\nauthorization = 1\n", "authorization"),
            ("[security]\nusers_max = 0\n", "users_max"),
            ("[security]\nacls_max = 1000001\n", "acls_max"),
            ("[security]\nacls_max = -1\n", "acls_max"),
            (
                "[security]\nsuper_users = [\"admin\"]\n",
                "security.super_users: expected a string in format principalType:principalName but got `admin`",
            ),
            (
                "[security]\nsuper_users = [\"User:\"]\n",
                "security.super_users: \"User:\" needs a type and a name",
            ),
            (
                "[security]\nsuperusers = []\n",
                "unknown field `superusers`",
            ),
            (
                "[security]\nallow_anonymous = false\nsasl_mechanisms = []\n",
                "security.allow_anonymous = false, but no client can authenticate",
            ),
            ("[security]\naudit_log = \"yes\"\n", "audit_log"),
            (
                "[security]\naudit_log_bytes_max = 100\n",
                "security.audit_log_bytes_max: 100 is below the least, 4096 bytes",
            ),
            (
                "[security]\naudit_log_bytes_max = -1\n",
                "audit_log_bytes_max",
            ),
            (
                "[security]\naudit_events_per_second_max = 0\n",
                "security.audit_events_per_second_max: must be at least 1",
            ),
            (
                "[security]\naudit_source_events_per_second_max = 0\n",
                "security.audit_source_events_per_second_max: must be at least 1",
            ),
            (
                "[security]\naudit_events_per_second_max = 5\n",
                "security.audit_source_events_per_second_max: 10 is more than audit_events_per_second_max (5)",
            ),
            (
                "[security]\naudit_summary_interval_ms = 10\n",
                "security.audit_summary_interval_ms: 10 must be between 100 and 86400000",
            ),
            (
                "[security]\naudit_queue_events_max = 0\n",
                "security.audit_queue_events_max: 0 must be between 1 and 1048576",
            ),
        ] {
            let error = parse(text).expect_err(text);
            assert!(
                error.contains(expected) && error.starts_with("t.toml"),
                "expected {expected:?} in: {error}"
            );
        }
        // With a way to authenticate, `false` is accepted.
        parse("[security]\nallow_anonymous = false\nsasl_mechanisms = []\nclient_auth = \"required\"\n")
            .unwrap();
    }

    fn listener(kind: &'static str, address: &str) -> ClientListener {
        ClientListener {
            kind,
            address: address.parse().unwrap(),
            certificate_required: false,
        }
    }

    #[test]
    fn anonymous_clients_need_loopback_listeners_or_an_explicit_choice() {
        let loopback = [
            listener("QUIC", "127.0.0.1:9092"),
            listener("Kafka plaintext", "[::1]:9092"),
        ];
        let exposed = [
            listener("QUIC", "127.0.0.1:9092"),
            listener("Kafka TLS", "0.0.0.0:9093"),
        ];
        let unset = SecurityConfig::default();
        let access = unset.anonymous_access(&loopback).unwrap();
        assert_eq!(access, AnonymousAccess::LoopbackOnly);
        assert!(!unset.authorization_enabled(&access));
        let refused = unset.anonymous_access(&exposed).unwrap_err();
        assert_eq!(refused.listener, exposed[1]);
        let message = refused.to_string();
        for part in [
            "Kafka TLS listener on 0.0.0.0:9093",
            "allow_anonymous = true",
            "allow_anonymous = false with client_auth = \"required\"",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        let allowed = SecurityConfig {
            allow_anonymous: Some(true),
            ..SecurityConfig::default()
        };
        let access = allowed.anonymous_access(&exposed).unwrap();
        assert_eq!(access, AnonymousAccess::Everywhere);
        assert!(!allowed.authorization_enabled(&access));
        let closed = SecurityConfig {
            allow_anonymous: Some(false),
            ..SecurityConfig::default()
        };
        let access = closed.anonymous_access(&exposed).unwrap();
        assert_eq!(access, AnonymousAccess::Never);
        assert!(!access.allowed());
        assert!(closed.authorization_enabled(&access));
        let explicit = SecurityConfig {
            allow_anonymous: Some(false),
            authorization: Some(false),
            ..SecurityConfig::default()
        };
        assert!(!explicit.authorization_enabled(&access));
        assert_eq!(
            anonymous_access_summary(&AnonymousAccess::LoopbackOnly, &loopback),
            "anonymous clients: loopback only, no authentication required (QUIC 127.0.0.1:9092, Kafka plaintext [::1]:9092); set [security] to serve other addresses"
        );
        // A listener that requires certificates lets no anonymous client through: the line
        // leaves it out, and says so when that is every listener.
        let mut quic_required = loopback.clone();
        quic_required[0].certificate_required = true;
        assert_eq!(
            anonymous_access_summary(&AnonymousAccess::LoopbackOnly, &quic_required),
            "anonymous clients: loopback only, no authentication required (Kafka plaintext [::1]:9092); set [security] to serve other addresses"
        );
        quic_required[1].certificate_required = true;
        assert!(
            anonymous_access_summary(&AnonymousAccess::Everywhere, &quic_required).starts_with(
                "anonymous clients: none, every listener requires a client certificate"
            )
        );
    }
}

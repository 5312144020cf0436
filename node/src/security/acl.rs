//! The authorization model of issue 15: Kafka's ACLs, with Kafka's `StandardAuthorizer`
//! semantics, as a pure data structure (no IO, no clock, no logging).
//!
//! An ACL ([`AclBinding`]) says: *principal* from *host* is *allowed* (or *denied*)
//! *operation* on resources of *type* whose name matches *pattern*. [`Authorizer`] holds the
//! bindings and answers [`Authorizer::authorize`] with a [`Decision`] naming the rule that
//! decided, for the audit log.
//!
//! The rules, as `StandardAuthorizerData.findAclRule`/`findResult` (Kafka 3.x/4.x) apply them:
//! - a super user (`super_users`, compared as `Type:name`) is allowed everything;
//! - the ACLs that apply to a resource are the LITERAL ones with its exact name, the LITERAL
//!   ones named `*` (the wildcard) and the PREFIXED ones whose name is a prefix of it;
//! - an ACL matches a request when its principal is the request's principal or `User:*`, its
//!   host is `*` or the request's address, and its operation is `All`, the request's
//!   operation, or (ALLOW ACLs only) implies it: Read, Write, Delete, Alter (and Describe)
//!   imply Describe; AlterConfigs (and DescribeConfigs) imply DescribeConfigs. A DENY for
//!   Read does not deny Describe;
//! - a matching DENY wins over any ALLOW; else a matching ALLOW allows;
//! - else, when the resource has no ACL at all (for anyone), the answer is
//!   `allow_everyone_if_no_acl_found` (default `false`, issue 15); when it has ACLs but none
//!   allows this request, it is denied.
//!
//! Where Ledge differs from Kafka, on purpose: hosts are compared as IP addresses, not as
//! strings (Kafka compares `InetAddress.getHostAddress()` text, so an ACL for `::1` never
//! matches a client Java prints as `0:0:0:0:0:0:0:1`; IPv4-mapped IPv6 addresses compare as
//! their IPv4 address); and the number of bindings is bounded
//! ([`AuthorizerConfig::max_acls`]).
//!
//! Wire codes are Kafka's (`AclOperation`, `AclPermissionType`, `PatternType`,
//! `ResourceType` in `org.apache.kafka.common`), used by CreateAcls, DescribeAcls and
//! DeleteAcls. Ledge's own resource types, [`ResourceType::Module`] and
//! [`ResourceType::Transform`], take codes Kafka does not use ([`LEDGE_MODULE_CODE`],
//! [`LEDGE_TRANSFORM_CODE`]); a Kafka client shows them as UNKNOWN.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The only valid name of the cluster resource (Kafka's `Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The wildcard resource name of a LITERAL pattern, and the wildcard host.
pub const WILDCARD: &str = "*";

/// The wildcard principal: an ACL for it applies to every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Default of [`AuthorizerConfig::max_acls`]: 100,000 bindings. At a few hundred bytes
/// each in memory this is tens of MiB, and an authorize call does not grow with it (it looks
/// up the request's name, its prefixes and `*`).
pub const DEFAULT_MAX_ACLS: usize = 100_000;

/// Wire code of [`ResourceType::Module`]: outside Kafka's range (0..=7) so a future Kafka
/// type cannot collide with it.
pub const LEDGE_MODULE_CODE: i8 = 64;

/// Wire code of [`ResourceType::Transform`] (see [`LEDGE_MODULE_CODE`]).
pub const LEDGE_TRANSFORM_CODE: i8 = 65;

/// Kafka's code for UNKNOWN in every ACL enum.
const UNKNOWN_CODE: i8 = 0;
/// Kafka's code for ANY in every ACL enum (a filter's "any value").
const ANY_CODE: i8 = 1;
/// Kafka's `PatternType.MATCH` code.
const MATCH_CODE: i8 = 2;

/// Why a binding, a filter or a name was refused. Every variant is a client error (Kafka
/// answers INVALID_REQUEST for all but [`AclError::TooManyAcls`]). Messages carry no
/// secret: ACL fields are not secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A wire code this version does not know (Kafka's UNKNOWN).
    #[error("unknown {field} code {code}")]
    UnknownCode {
        /// Which field: "resource type", "pattern type", "operation", "permission type".
        field: &'static str,
        /// The code received.
        code: i8,
    },
    /// ANY (or MATCH) where a binding needs one definite value.
    #[error("invalid {field} {value} in an ACL binding: only filters may use it")]
    NotSpecific {
        /// Which field.
        field: &'static str,
        /// "ANY" or "MATCH".
        value: &'static str,
    },
    /// A name (CLI or config) that names no value of the field.
    #[error("unknown {field} '{name}'")]
    UnknownName {
        /// Which field.
        field: &'static str,
        /// The name given.
        name: String,
    },
    /// The resource name is empty.
    #[error("resource name should not be empty")]
    EmptyResourceName,
    /// A cluster binding not named `kafka-cluster`.
    #[error("the only valid name for the CLUSTER resource is {CLUSTER_NAME}, not '{name}'")]
    InvalidClusterName {
        /// The name given.
        name: String,
    },
    /// A principal not of the form `Type:name` (both parts non-empty).
    #[error("principal '{principal}' is not of the form Type:name")]
    InvalidPrincipal {
        /// The principal given.
        principal: String,
    },
    /// A host neither `*` nor an IP address literal.
    #[error("host '{host}' is neither * nor an IP address")]
    InvalidHost {
        /// The host given.
        host: String,
    },
    /// Adding the binding would exceed [`AuthorizerConfig::max_acls`].
    #[error("too many ACLs: the limit is {max_acls}")]
    TooManyAcls {
        /// The configured limit.
        max_acls: usize,
    },
}

/// Normalizes a name for case- and separator-insensitive parsing: `DescribeConfigs`,
/// `DESCRIBE_CONFIGS` and `describe-configs` all become `describeconfigs`.
fn fold_name(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The kind of resource an ACL protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    /// A topic (Kafka code 2).
    Topic,
    /// A consumer group (3).
    Group,
    /// The cluster, always named [`CLUSTER_NAME`] (4).
    Cluster,
    /// A transactional id (5).
    TransactionalId,
    /// A WASM module (Ledge: [`LEDGE_MODULE_CODE`]).
    Module,
    /// A deployed transform (Ledge: [`LEDGE_TRANSFORM_CODE`]).
    Transform,
}

impl ResourceType {
    /// Every value, in order.
    pub const ALL: [Self; 6] = [
        Self::Topic,
        Self::Group,
        Self::Cluster,
        Self::TransactionalId,
        Self::Module,
        Self::Transform,
    ];

    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::Module => LEDGE_MODULE_CODE,
            Self::Transform => LEDGE_TRANSFORM_CODE,
        }
    }

    /// Decodes a binding's resource type: ANY and unknown codes are errors.
    pub fn from_code(code: i8) -> Result<Self, AclError> {
        match decode_filter_code(code, "resource type", Self::ALL, Self::code)? {
            Some(value) => Ok(value),
            None => Err(AclError::NotSpecific {
                field: "resource type",
                value: "ANY",
            }),
        }
    }

    /// The name the CLI prints and parses (Kafka's `SecurityUtils.resourceTypeName`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Topic => "Topic",
            Self::Group => "Group",
            Self::Cluster => "Cluster",
            Self::TransactionalId => "TransactionalId",
            Self::Module => "Module",
            Self::Transform => "Transform",
        }
    }
}

/// How an ACL's resource name matches resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    /// The name itself, or every name when it is `*` (Kafka code 3).
    Literal,
    /// Every name that starts with it (4).
    Prefixed,
}

impl PatternType {
    /// Every value, in order.
    pub const ALL: [Self; 2] = [Self::Literal, Self::Prefixed];

    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    /// Decodes a binding's pattern type: ANY, MATCH and unknown codes are errors.
    pub fn from_code(code: i8) -> Result<Self, AclError> {
        match PatternTypeFilter::from_code(code)? {
            PatternTypeFilter::Literal => Ok(Self::Literal),
            PatternTypeFilter::Prefixed => Ok(Self::Prefixed),
            PatternTypeFilter::Any => Err(AclError::NotSpecific {
                field: "pattern type",
                value: "ANY",
            }),
            PatternTypeFilter::Match => Err(AclError::NotSpecific {
                field: "pattern type",
                value: "MATCH",
            }),
        }
    }

    /// The name the CLI prints and parses (`--resource-pattern-type prefixed`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Literal => "literal",
            Self::Prefixed => "prefixed",
        }
    }
}

/// What an ACL allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclOperation {
    /// Every operation (Kafka code 2).
    All,
    /// 3.
    Read,
    /// 4.
    Write,
    /// 5.
    Create,
    /// 6.
    Delete,
    /// 7.
    Alter,
    /// 8.
    Describe,
    /// 9.
    ClusterAction,
    /// 10.
    DescribeConfigs,
    /// 11.
    AlterConfigs,
    /// 12.
    IdempotentWrite,
}

impl AclOperation {
    /// Every value, in order.
    pub const ALL: [Self; 11] = [
        Self::All,
        Self::Read,
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Alter,
        Self::Describe,
        Self::ClusterAction,
        Self::DescribeConfigs,
        Self::AlterConfigs,
        Self::IdempotentWrite,
    ];

    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            Self::All => 2,
            Self::Read => 3,
            Self::Write => 4,
            Self::Create => 5,
            Self::Delete => 6,
            Self::Alter => 7,
            Self::Describe => 8,
            Self::ClusterAction => 9,
            Self::DescribeConfigs => 10,
            Self::AlterConfigs => 11,
            Self::IdempotentWrite => 12,
        }
    }

    /// Decodes a binding's operation: ANY and unknown codes (including Kafka's token
    /// operations, 13 and 14, which Ledge does not have) are errors.
    pub fn from_code(code: i8) -> Result<Self, AclError> {
        match decode_filter_code(code, "operation", Self::ALL, Self::code)? {
            Some(value) => Ok(value),
            None => Err(AclError::NotSpecific {
                field: "operation",
                value: "ANY",
            }),
        }
    }

    /// The name the CLI prints and parses (`--operation DescribeConfigs`).
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "All",
            Self::Read => "Read",
            Self::Write => "Write",
            Self::Create => "Create",
            Self::Delete => "Delete",
            Self::Alter => "Alter",
            Self::Describe => "Describe",
            Self::ClusterAction => "ClusterAction",
            Self::DescribeConfigs => "DescribeConfigs",
            Self::AlterConfigs => "AlterConfigs",
            Self::IdempotentWrite => "IdempotentWrite",
        }
    }

    /// Whether an ALLOW ACL for `self` allows `requested` (Kafka's `findResult`): `All`
    /// allows everything; Read, Write, Delete and Alter imply Describe; AlterConfigs implies
    /// DescribeConfigs.
    pub fn allow_covers(self, requested: Self) -> bool {
        match (self, requested) {
            (Self::All, _) => true,
            (
                Self::Describe | Self::Read | Self::Write | Self::Delete | Self::Alter,
                Self::Describe,
            ) => true,
            (Self::DescribeConfigs | Self::AlterConfigs, Self::DescribeConfigs) => true,
            (granted, requested) => granted == requested,
        }
    }

    /// Whether a DENY ACL for `self` denies `requested`: `All` denies everything, any other
    /// operation only itself (a DENY for Read does not deny Describe).
    pub fn deny_covers(self, requested: Self) -> bool {
        self == Self::All || self == requested
    }
}

/// Whether an ACL allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclPermission {
    /// Kafka code 2. Sorts first, as in Kafka.
    Deny,
    /// 3.
    Allow,
}

impl AclPermission {
    /// Every value, in order.
    pub const ALL: [Self; 2] = [Self::Deny, Self::Allow];

    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    /// Decodes a binding's permission type: ANY and unknown codes are errors.
    pub fn from_code(code: i8) -> Result<Self, AclError> {
        match decode_filter_code(code, "permission type", Self::ALL, Self::code)? {
            Some(value) => Ok(value),
            None => Err(AclError::NotSpecific {
                field: "permission type",
                value: "ANY",
            }),
        }
    }

    /// The name the CLI prints and parses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deny => "Deny",
            Self::Allow => "Allow",
        }
    }
}

/// A filter's pattern type: a definite one, ANY (every pattern type, but names compare
/// exactly) or MATCH (every pattern that would apply to the filter's name).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PatternTypeFilter {
    /// Kafka code 1.
    #[default]
    Any,
    /// Kafka code 2.
    Match,
    /// Only LITERAL bindings (3).
    Literal,
    /// Only PREFIXED bindings (4).
    Prefixed,
}

impl PatternTypeFilter {
    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            Self::Any => ANY_CODE,
            Self::Match => MATCH_CODE,
            Self::Literal => PatternType::Literal.code(),
            Self::Prefixed => PatternType::Prefixed.code(),
        }
    }

    /// Decodes a filter's pattern type: unknown codes are errors.
    pub fn from_code(code: i8) -> Result<Self, AclError> {
        match code {
            ANY_CODE => Ok(Self::Any),
            MATCH_CODE => Ok(Self::Match),
            3 => Ok(Self::Literal),
            4 => Ok(Self::Prefixed),
            code => Err(AclError::UnknownCode {
                field: "pattern type",
                code,
            }),
        }
    }

    /// The name the CLI prints and parses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Match => "match",
            Self::Literal => "literal",
            Self::Prefixed => "prefixed",
        }
    }
}

impl From<PatternType> for PatternTypeFilter {
    fn from(pattern: PatternType) -> Self {
        match pattern {
            PatternType::Literal => Self::Literal,
            PatternType::Prefixed => Self::Prefixed,
        }
    }
}

/// Decodes a code that may be ANY in a filter: `Ok(None)` for ANY, `Ok(Some)` for a known
/// value, an error for UNKNOWN (0) and codes no value has.
fn decode_filter_code<T: Copy, const N: usize>(
    code: i8,
    field: &'static str,
    values: [T; N],
    code_of: fn(T) -> i8,
) -> Result<Option<T>, AclError> {
    if code == ANY_CODE {
        return Ok(None);
    }
    if code == UNKNOWN_CODE {
        return Err(AclError::UnknownCode { field, code });
    }
    values
        .into_iter()
        .find(|value| code_of(*value) == code)
        .map(Some)
        .ok_or(AclError::UnknownCode { field, code })
}

/// Parses a name case- and separator-insensitively against every value's name.
fn parse_name<T: Copy, const N: usize>(
    name: &str,
    field: &'static str,
    values: [T; N],
    name_of: fn(T) -> &'static str,
) -> Result<T, AclError> {
    let folded = fold_name(name);
    values
        .into_iter()
        .find(|value| fold_name(name_of(*value)) == folded)
        .ok_or_else(|| AclError::UnknownName {
            field,
            name: name.to_owned(),
        })
}

macro_rules! name_traits {
    ($type:ty, $field:literal) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $type {
            type Err = AclError;

            /// Case-insensitive; `_` and `-` are ignored (`DescribeConfigs`,
            /// `DESCRIBE_CONFIGS`, `describe-configs`).
            fn from_str(name: &str) -> Result<Self, AclError> {
                parse_name(name, $field, Self::ALL, Self::name)
            }
        }
    };
}

name_traits!(ResourceType, "resource type");
name_traits!(PatternType, "pattern type");
name_traits!(AclOperation, "operation");
name_traits!(AclPermission, "permission type");

impl PatternTypeFilter {
    /// Every value, in order.
    pub const ALL: [Self; 4] = [Self::Any, Self::Match, Self::Literal, Self::Prefixed];
}

name_traits!(PatternTypeFilter, "pattern type");

/// One ACL. Build it with [`AclBinding::new`] (or [`AclBinding::from_wire`]) to validate
/// it; [`Authorizer::add`] validates again, so a binding read back from storage cannot skip
/// the checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The resource name, `*` (LITERAL: every resource) or a prefix (PREFIXED).
    pub resource_name: String,
    /// How `resource_name` matches.
    pub pattern_type: PatternType,
    /// `Type:name` (e.g. `User:alice`), or [`WILDCARD_PRINCIPAL`].
    pub principal: String,
    /// `*` or an IP address literal.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

impl AclBinding {
    /// A validated binding (the checks of Kafka's `AclControlManager.validateNewAcl` and
    /// `AclApis`): a non-empty resource name, `kafka-cluster` for the cluster, a
    /// `Type:name` principal, a `*` or IP host.
    pub fn new(
        resource_type: ResourceType,
        resource_name: impl Into<String>,
        pattern_type: PatternType,
        principal: impl Into<String>,
        host: impl Into<String>,
        operation: AclOperation,
        permission: AclPermission,
    ) -> Result<Self, AclError> {
        let binding = Self {
            resource_type,
            resource_name: resource_name.into(),
            pattern_type,
            principal: principal.into(),
            host: host.into(),
            operation,
            permission,
        };
        binding.validate()?;
        Ok(binding)
    }

    /// A binding from a CreateAcls creation's fields (Kafka's codes), validated: ANY, MATCH
    /// and unknown codes are refused, as Kafka refuses them.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        Self::new(
            ResourceType::from_code(resource_type)?,
            resource_name,
            PatternType::from_code(pattern_type)?,
            principal,
            host,
            AclOperation::from_code(operation)?,
            AclPermission::from_code(permission)?,
        )
    }

    /// Checks the fields the types do not already guarantee.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_name.is_empty() {
            return Err(AclError::EmptyResourceName);
        }
        // Kafka's AclApis: the cluster resource has exactly one name. A PREFIXED cluster
        // binding named `kafka-cluster` is accepted, as Kafka accepts it.
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(AclError::InvalidClusterName {
                name: self.resource_name.clone(),
            });
        }
        validate_principal(&self.principal)?;
        parse_host(&self.host)?;
        Ok(())
    }

    /// Whether this binding applies to the resource `(resource_type, resource_name)`,
    /// whoever asks: LITERAL by equal name or `*`, PREFIXED by prefix.
    pub fn applies_to(&self, resource_type: ResourceType, resource_name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == resource_name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => resource_name.starts_with(self.resource_name.as_str()),
            }
    }
}

impl fmt::Display for AclBinding {
    /// One line: `Allow User:alice from * Read on Topic:literal:orders`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} from {} {} on {}:{}:{}",
            self.permission,
            self.principal,
            self.host,
            self.operation,
            self.resource_type,
            self.pattern_type,
            self.resource_name
        )
    }
}

/// Checks `Type:name` with both parts non-empty (Kafka's `SecurityUtils.parseKafkaPrincipal`
/// splits at the first `:`; it also accepts an empty name, Ledge does not).
pub fn validate_principal(principal: &str) -> Result<(), AclError> {
    match principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(AclError::InvalidPrincipal {
            principal: principal.to_owned(),
        }),
    }
}

/// `None` for `*`, the address for an IP literal.
fn parse_host(host: &str) -> Result<Option<IpAddr>, AclError> {
    if host == WILDCARD {
        return Ok(None);
    }
    host.parse::<IpAddr>()
        .map(|ip| Some(ip.to_canonical()))
        .map_err(|_| AclError::InvalidHost {
            host: host.to_owned(),
        })
}

/// A DescribeAcls/DeleteAcls filter, with Kafka's `AclBindingFilter` matching rules. `None`
/// in a field means ANY (Kafka's null name/principal/host, or the ANY code).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBindingFilter {
    /// `None`: every resource type.
    pub resource_type: Option<ResourceType>,
    /// `None`: every name.
    pub resource_name: Option<String>,
    /// How names compare (see [`AclBindingFilter::matches`]).
    pub pattern_type: PatternTypeFilter,
    /// `None`: every principal; else compared exactly (`User:*` matches only `User:*`
    /// bindings).
    pub principal: Option<String>,
    /// `None`: every host; else compared exactly.
    pub host: Option<String>,
    /// `None`: every operation; `Some(All)` matches only bindings for `All`.
    pub operation: Option<AclOperation>,
    /// `None`: both.
    pub permission: Option<AclPermission>,
}

impl AclBindingFilter {
    /// The filter that matches every binding.
    pub fn any() -> Self {
        Self::default()
    }

    /// A filter from a DescribeAcls request or a DeleteAcls filter (Kafka's codes; `None`
    /// strings are Kafka's nulls). ANY codes become `None`; UNKNOWN and unknown codes are
    /// errors, as Kafka answers them with INVALID_REQUEST.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        Ok(Self {
            resource_type: decode_filter_code(
                resource_type,
                "resource type",
                ResourceType::ALL,
                ResourceType::code,
            )?,
            resource_name: resource_name.map(str::to_owned),
            pattern_type: PatternTypeFilter::from_code(pattern_type)?,
            principal: principal.map(str::to_owned),
            host: host.map(str::to_owned),
            operation: decode_filter_code(
                operation,
                "operation",
                AclOperation::ALL,
                AclOperation::code,
            )?,
            permission: decode_filter_code(
                permission,
                "permission type",
                AclPermission::ALL,
                AclPermission::code,
            )?,
        })
    }

    /// The filter that matches exactly `binding` (what `ledge acl remove` with every field
    /// given builds).
    pub fn exact(binding: &AclBinding) -> Self {
        Self {
            resource_type: Some(binding.resource_type),
            resource_name: Some(binding.resource_name.clone()),
            pattern_type: binding.pattern_type.into(),
            principal: Some(binding.principal.clone()),
            host: Some(binding.host.clone()),
            operation: Some(binding.operation),
            permission: Some(binding.permission),
        }
    }

    /// Kafka's `ResourcePatternFilter.matches` and `AccessControlEntryFilter.matches`:
    /// - the resource type, principal, host, operation and permission compare exactly when
    ///   given;
    /// - pattern type ANY, or the binding's own type: the names compare exactly;
    /// - MATCH: the bindings that would apply to a resource named like the filter: LITERAL
    ///   with that name or `*`, PREFIXED with a prefix of it;
    /// - with no name, only the pattern type (ANY/MATCH: any) is compared.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_resource(binding) && self.matches_entry(binding)
    }

    fn matches_resource(&self, binding: &AclBinding) -> bool {
        if self
            .resource_type
            .is_some_and(|kind| kind != binding.resource_type)
        {
            return false;
        }
        let binding_pattern = PatternTypeFilter::from(binding.pattern_type);
        match self.pattern_type {
            PatternTypeFilter::Any | PatternTypeFilter::Match => {}
            specific if specific == binding_pattern => {}
            _ => return false,
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type == PatternTypeFilter::Any || self.pattern_type == binding_pattern {
            return *name == binding.resource_name;
        }
        // MATCH.
        match binding.pattern_type {
            PatternType::Literal => {
                *name == binding.resource_name || binding.resource_name == WILDCARD
            }
            PatternType::Prefixed => name.starts_with(binding.resource_name.as_str()),
        }
    }

    fn matches_entry(&self, binding: &AclBinding) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|principal| *principal == binding.principal)
            && self.host.as_ref().is_none_or(|host| *host == binding.host)
            && self
                .operation
                .is_none_or(|operation| operation == binding.operation)
            && self
                .permission
                .is_none_or(|permission| permission == binding.permission)
    }
}

/// The authorizer's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerConfig {
    /// Principals allowed everything (`security.super_users`, e.g. `["User:admin"]`).
    pub super_users: Vec<String>,
    /// The answer for a resource no ACL applies to (Kafka's
    /// `allow.everyone.if.no.acl.found`). Default `false`: no ACL means deny.
    pub allow_everyone_if_no_acl_found: bool,
    /// The most bindings the authorizer holds; [`Authorizer::add`] refuses more with
    /// [`AclError::TooManyAcls`]. Default [`DEFAULT_MAX_ACLS`].
    pub max_acls: usize,
}

impl Default for AuthorizerConfig {
    fn default() -> Self {
        Self {
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            max_acls: DEFAULT_MAX_ACLS,
        }
    }
}

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The request may proceed.
    Allowed,
    /// The request is refused.
    Denied,
}

/// What decided a [`Decision`] (Kafka's `MatchingRule`, for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionRule {
    /// The principal is a super user.
    SuperUser,
    /// This binding matched: a DENY (which wins) or, with no matching DENY, an ALLOW.
    Acl(Arc<AclBinding>),
    /// No ACL applies to the resource at all: `allow_everyone_if_no_acl_found` decided.
    NoAclForResource,
    /// ACLs apply to the resource, but none allows this principal, host and operation.
    NoMatchingAllow,
}

/// The answer of [`Authorizer::authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or denied.
    pub outcome: Outcome,
    /// Why.
    pub rule: DecisionRule,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allowed
    }

    /// The binding that decided, or `None` for a super user or a default.
    pub fn binding(&self) -> Option<&AclBinding> {
        match &self.rule {
            DecisionRule::Acl(binding) => Some(binding),
            _ => None,
        }
    }
}

/// A binding in the index with its host parsed once.
#[derive(Debug, Clone)]
struct IndexedAcl {
    binding: Arc<AclBinding>,
    /// `None`: any host.
    host: Option<IpAddr>,
}

/// The bindings of one resource type.
#[derive(Debug, Default, Clone)]
struct TypeIndex {
    /// LITERAL bindings by resource name (including `*`).
    literal: BTreeMap<String, Vec<IndexedAcl>>,
    /// PREFIXED bindings by prefix.
    prefixed: BTreeMap<String, Vec<IndexedAcl>>,
    /// How many distinct prefixes of each byte length `prefixed` holds: authorize looks up
    /// only the request name's prefixes of these lengths, so its cost grows with the number
    /// of distinct prefix lengths, not with the name's length or the number of ACLs.
    prefix_lengths: BTreeMap<usize, usize>,
}

/// The ACLs of a node and Kafka's rules over them. Pure: the node stores the bindings
/// ([`AclBinding`] is `serde`), feeds them in with [`Authorizer::add`] and asks
/// [`Authorizer::authorize`] per request.
#[derive(Debug, Clone)]
pub struct Authorizer {
    super_users: BTreeSet<String>,
    allow_everyone_if_no_acl_found: bool,
    max_acls: usize,
    by_type: BTreeMap<ResourceType, TypeIndex>,
    len: usize,
}

impl Authorizer {
    /// An authorizer with no ACLs. Super users must be `Type:name` principals.
    pub fn new(config: AuthorizerConfig) -> Result<Self, AclError> {
        for principal in &config.super_users {
            validate_principal(principal)?;
        }
        Ok(Self {
            super_users: config.super_users.into_iter().collect(),
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
            max_acls: config.max_acls,
            by_type: BTreeMap::new(),
            len: 0,
        })
    }

    /// An authorizer with no ACLs and no super users: it denies everything.
    pub fn deny_all() -> Self {
        Self {
            super_users: BTreeSet::new(),
            allow_everyone_if_no_acl_found: false,
            max_acls: 0,
            by_type: BTreeMap::new(),
            len: 0,
        }
    }

    /// How many bindings it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no binding.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a binding after validating it. `Ok(false)` when the same binding is already
    /// there (Kafka's CreateAcls succeeds for it too, and stores nothing new). Refuses a new
    /// binding past [`AuthorizerConfig::max_acls`].
    pub fn add(&mut self, binding: AclBinding) -> Result<bool, AclError> {
        binding.validate()?;
        let host = parse_host(&binding.host)?;
        let index = self.by_type.entry(binding.resource_type).or_default();
        let map = match binding.pattern_type {
            PatternType::Literal => &mut index.literal,
            PatternType::Prefixed => &mut index.prefixed,
        };
        if map
            .get(&binding.resource_name)
            .is_some_and(|acls| acls.iter().any(|acl| *acl.binding == binding))
        {
            return Ok(false);
        }
        if self.len >= self.max_acls {
            return Err(AclError::TooManyAcls {
                max_acls: self.max_acls,
            });
        }
        let name_len = binding.resource_name.len();
        let pattern_type = binding.pattern_type;
        let acls = map.entry(binding.resource_name.clone()).or_default();
        let new_name = acls.is_empty();
        // Kept sorted (DENY before ALLOW, as in Kafka's ordering) so the decision that
        // names a binding names the same one whatever the insertion order.
        let position = acls.partition_point(|acl| *acl.binding < binding);
        acls.insert(
            position,
            IndexedAcl {
                binding: Arc::new(binding),
                host,
            },
        );
        if new_name && pattern_type == PatternType::Prefixed {
            *index.prefix_lengths.entry(name_len).or_default() += 1;
        }
        self.len += 1;
        Ok(true)
    }

    /// Removes one binding; whether it was there.
    pub fn remove(&mut self, binding: &AclBinding) -> bool {
        let Some(index) = self.by_type.get_mut(&binding.resource_type) else {
            return false;
        };
        let map = match binding.pattern_type {
            PatternType::Literal => &mut index.literal,
            PatternType::Prefixed => &mut index.prefixed,
        };
        let Some(acls) = map.get_mut(&binding.resource_name) else {
            return false;
        };
        let Some(position) = acls.iter().position(|acl| *acl.binding == *binding) else {
            return false;
        };
        acls.remove(position);
        if acls.is_empty() {
            map.remove(&binding.resource_name);
            if binding.pattern_type == PatternType::Prefixed {
                let len = binding.resource_name.len();
                if let Some(count) = index.prefix_lengths.get_mut(&len) {
                    *count -= 1;
                    if *count == 0 {
                        index.prefix_lengths.remove(&len);
                    }
                }
            }
        }
        self.len -= 1;
        true
    }

    /// Removes every binding `filter` matches (DeleteAcls) and returns them, in
    /// [`Authorizer::list`] order.
    pub fn remove_matching(&mut self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let removed = self.list(filter);
        for binding in &removed {
            self.remove(binding);
        }
        removed
    }

    /// The bindings `filter` matches (DescribeAcls), sorted by resource type, pattern type,
    /// name, then the binding's other fields.
    pub fn list(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let mut out = Vec::new();
        for (resource_type, index) in &self.by_type {
            if filter
                .resource_type
                .is_some_and(|kind| kind != *resource_type)
            {
                continue;
            }
            for map in [&index.literal, &index.prefixed] {
                for acl in map.values().flatten() {
                    if filter.matches(&acl.binding) {
                        out.push(AclBinding::clone(&acl.binding));
                    }
                }
            }
        }
        out
    }

    /// Every binding, as [`Authorizer::list`] orders them.
    pub fn bindings(&self) -> impl Iterator<Item = &AclBinding> {
        self.by_type.values().flat_map(|index| {
            index
                .literal
                .values()
                .chain(index.prefixed.values())
                .flatten()
                .map(|acl| &*acl.binding)
        })
    }

    /// May `principal` (`Type:name`, as the principal mapping produced it), connected from
    /// `host`, perform `operation` on the resource `(resource_type, resource_name)`?
    /// Kafka's rules (see the module documentation). The binding a decision names is the
    /// first DENY found, looking at the exact LITERAL name, then PREFIXED from the longest
    /// prefix to the shortest, then the `*` LITERAL; else the first ALLOW in that order.
    pub fn authorize(
        &self,
        principal: &str,
        host: IpAddr,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Decision {
        if self.super_users.contains(principal) {
            return Decision {
                outcome: Outcome::Allowed,
                rule: DecisionRule::SuperUser,
            };
        }
        let host = host.to_canonical();
        let mut found_acl = false;
        let mut allow: Option<&Arc<AclBinding>> = None;
        if let Some(index) = self.by_type.get(&resource_type) {
            let exact = index.literal.get(resource_name);
            let prefixes = index.prefix_lengths.keys().rev().filter_map(|len| {
                resource_name
                    .get(..*len)
                    .and_then(|prefix| index.prefixed.get(prefix))
            });
            let wildcard = if resource_name == WILDCARD {
                None // Already looked at as the exact name.
            } else {
                index.literal.get(WILDCARD)
            };
            let sections = exact.into_iter().chain(prefixes).chain(wildcard);
            for acls in sections {
                for acl in acls {
                    found_acl = true;
                    if !acl_matches_request(acl, principal, host) {
                        continue;
                    }
                    match acl.binding.permission {
                        AclPermission::Deny if acl.binding.operation.deny_covers(operation) => {
                            return Decision {
                                outcome: Outcome::Denied,
                                rule: DecisionRule::Acl(Arc::clone(&acl.binding)),
                            };
                        }
                        AclPermission::Allow if acl.binding.operation.allow_covers(operation) => {
                            allow.get_or_insert(&acl.binding);
                        }
                        AclPermission::Deny | AclPermission::Allow => {}
                    }
                }
            }
        }
        match allow {
            Some(binding) => Decision {
                outcome: Outcome::Allowed,
                rule: DecisionRule::Acl(Arc::clone(binding)),
            },
            None if found_acl => Decision {
                outcome: Outcome::Denied,
                rule: DecisionRule::NoMatchingAllow,
            },
            None if self.allow_everyone_if_no_acl_found => Decision {
                outcome: Outcome::Allowed,
                rule: DecisionRule::NoAclForResource,
            },
            None => Decision {
                outcome: Outcome::Denied,
                rule: DecisionRule::NoAclForResource,
            },
        }
    }
}

impl Authorizer {
    /// May `principal` from `host` perform `operation` on *at least one* resource of
    /// `resource_type`? Kafka's `Authorizer.authorizeByResourceType`, which InitProducerId
    /// without a transactional id asks as (Write, Topic) (KIP-679: an idempotent producer
    /// needs Write on some topic). As Kafka's default method:
    /// 1. allowed if [`Authorizer::authorize`] allows the operation on a resource named
    ///    `hardcode` (super users, `allow_everyone_if_no_acl_found`, `*` and matching
    ///    prefixes);
    /// 2. else, over the bindings of this type that match the principal (or `User:*`) and
    ///    host and name exactly this operation or `All` (no implication): a DENY on the
    ///    literal `*` denies; an ALLOW on the literal `*` allows; else allowed when some
    ///    ALLOWed literal name has no DENY on the same literal name nor on a prefix of it, or
    ///    some ALLOWed prefix has no DENYed prefix that is a prefix of it.
    pub fn authorize_on_some_resource(
        &self,
        principal: &str,
        host: IpAddr,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> Outcome {
        if self
            .authorize(principal, host, operation, resource_type, "hardcode")
            .is_allowed()
        {
            return Outcome::Allowed;
        }
        let Some(index) = self.by_type.get(&resource_type) else {
            return Outcome::Denied;
        };
        let host = host.to_canonical();
        let relevant = |acl: &IndexedAcl, permission: AclPermission| {
            acl.binding.permission == permission
                && (acl.binding.operation == operation
                    || acl.binding.operation == AclOperation::All)
                && acl_matches_request(acl, principal, host)
        };
        fn names_with(
            map: &BTreeMap<String, Vec<IndexedAcl>>,
            relevant: impl Fn(&IndexedAcl) -> bool,
        ) -> BTreeSet<&str> {
            map.iter()
                .filter(|(_, acls)| acls.iter().any(&relevant))
                .map(|(name, _)| name.as_str())
                .collect()
        }
        let allows = |acl: &IndexedAcl| relevant(acl, AclPermission::Allow);
        let denies = |acl: &IndexedAcl| relevant(acl, AclPermission::Deny);
        let denied_literal = names_with(&index.literal, denies);
        if denied_literal.contains(WILDCARD) {
            return Outcome::Denied;
        }
        let allowed_literal = names_with(&index.literal, allows);
        if allowed_literal.contains(WILDCARD) {
            return Outcome::Allowed;
        }
        let denied_prefixes = names_with(&index.prefixed, denies);
        let under_denied_prefix = |name: &str| {
            denied_prefixes
                .iter()
                .any(|prefix| name.starts_with(prefix))
        };
        let literal_allowed = allowed_literal
            .iter()
            .any(|name| !denied_literal.contains(name) && !under_denied_prefix(name));
        let prefix_allowed = names_with(&index.prefixed, allows)
            .iter()
            .any(|prefix| !under_denied_prefix(prefix));
        if literal_allowed || prefix_allowed {
            Outcome::Allowed
        } else {
            Outcome::Denied
        }
    }
}

/// Principal (exact or `User:*`) and host (`*` or the same address) of an ACL against a
/// request; the operation is checked by the caller.
fn acl_matches_request(acl: &IndexedAcl, principal: &str, host: IpAddr) -> bool {
    (acl.binding.principal == principal || acl.binding.principal == WILDCARD_PRINCIPAL)
        && acl.host.is_none_or(|acl_host| acl_host == host)
}

#[cfg(test)]
mod tests;

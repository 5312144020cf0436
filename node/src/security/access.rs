//! What one request's caller may do: the one place handlers ask "may this client do that?".
//!
//! A listener hands each request its connection's [`ClientIdentity`]; the broker turns it
//! into an [`Access`] ([`Broker::access`](crate::broker::Broker::access)) holding the
//! identity and, when authorization is on (`[security] authorization`), the ACLs as of the
//! request's start. Handlers call [`Access::check`] (a denial is an error naming principal,
//! operation and resource, and a line in the audit log), [`Access::allows_silently`] (for
//! "all topics" listings, which Kafka filters without logging each omission) and
//! [`Access::allows_on_some`] (InitProducerId without a transactional id).
//!
//! With authorization off every check allows: the identity is still there for the logs.
//! With authorization on and no ACLs installed (no security store: a test, the simulator),
//! every check denies except for super users: fail closed.

use std::sync::Arc;

use super::acl::{AclOperation, Authorizer, AuthorizerConfig, Outcome, ResourceType};
use super::audit::{AuditEvent, AuditLog};
use super::identity::ClientIdentity;

/// A refused operation: `User:alice may not Write Topic:orders`. The text names no secret
/// and no server path, so it may be sent to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not {operation} {resource_type}:{resource_name}")]
pub struct Denied {
    /// The caller's principal, `Type:name`.
    pub principal: String,
    /// The operation's name (`Write`).
    pub operation: &'static str,
    /// The resource type's name (`Topic`).
    pub resource_type: &'static str,
    /// The resource's name (`orders`; `kafka-cluster` for the cluster).
    pub resource_name: String,
}

/// One request's caller and what it may do (see the module documentation).
#[derive(Debug, Clone)]
pub struct Access {
    identity: ClientIdentity,
    /// The principal as ACLs name it (`User:alice`), made once per request when checks
    /// read ACLs (every check compares it); empty while authorization is off.
    principal: String,
    /// `None`: authorization is off, every check allows.
    authorizer: Option<Arc<Authorizer>>,
    /// Where denials and changes are recorded; `None`: the node's log only, unlimited
    /// (tests, the simulator).
    audit: Option<Arc<AuditLog>>,
}

impl Access {
    /// `identity` with authorization off: every check allows.
    pub fn unrestricted(identity: ClientIdentity) -> Self {
        Self {
            identity,
            principal: String::new(),
            authorizer: None,
            audit: None,
        }
    }

    /// `identity` checked against `authorizer`'s ACLs.
    pub fn enforced(identity: ClientIdentity, authorizer: Arc<Authorizer>) -> Self {
        Self {
            principal: identity.principal.to_string(),
            identity,
            authorizer: Some(authorizer),
            audit: None,
        }
    }

    /// `identity` with authorization on but no ACLs to read: every check denies (super
    /// users of `config` aside; settings the authorizer refuses deny everyone).
    pub fn without_acls(identity: ClientIdentity, config: AuthorizerConfig) -> Self {
        match Authorizer::new(config) {
            Ok(authorizer) => Self::enforced(identity, Arc::new(authorizer)),
            Err(error) => {
                tracing::error!(%error, "authorizer settings refused; denying every request");
                Self {
                    principal: identity.principal.to_string(),
                    identity,
                    authorizer: Some(Arc::new(Authorizer::deny_all())),
                    audit: None,
                }
            }
        }
    }

    /// Records denials and changes in `audit` (rate limited; [`AuditLog`]) instead of the
    /// node's log alone.
    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Self {
        self.audit = audit;
        self
    }

    /// Whose request this is.
    pub fn identity(&self) -> &ClientIdentity {
        &self.identity
    }

    /// Whether checks consult ACLs (authorization on).
    pub fn is_enforced(&self) -> bool {
        self.authorizer.is_some()
    }

    /// May the caller perform `operation` on `(resource_type, resource_name)`? A denial is
    /// recorded in the audit log (an `authorization_denied` event, rate limited; target
    /// `ledge::audit` in the node's log) and returned as [`Denied`].
    pub fn check(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Result<(), Denied> {
        if self.decide(operation, resource_type, resource_name) {
            return Ok(());
        }
        let denied = self.denied(operation, resource_type, resource_name);
        super::audit::record(
            self.audit.as_deref(),
            &AuditEvent::authorization_denied(
                &self.identity,
                operation,
                resource_type,
                resource_name,
            ),
        );
        Err(denied)
    }

    /// [`Access::check`] as a bool.
    pub fn allows(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        self.check(operation, resource_type, resource_name).is_ok()
    }

    /// Like [`Access::allows`], without an audit line for a denial: for listings ("all
    /// topics", ListGroups) that leave out what the caller may not see, as Kafka does
    /// (`logIfDenied = false`).
    pub fn allows_silently(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        self.decide(operation, resource_type, resource_name)
    }

    /// May the caller perform `operation` on at least one resource of `resource_type`
    /// ([`Authorizer::authorize_on_some_resource`]; not logged when denied, as Kafka's).
    pub fn allows_on_some(&self, operation: AclOperation, resource_type: ResourceType) -> bool {
        match &self.authorizer {
            None => true,
            Some(authorizer) => {
                authorizer.authorize_on_some_resource(
                    &self.principal_text(),
                    self.identity.host,
                    operation,
                    resource_type,
                ) == Outcome::Allowed
            }
        }
    }

    /// Records an administrative change this caller asked for (a topic created, an ACL
    /// removed, a module uploaded, offsets reset...), in the audit log (an `admin_change`
    /// event, rate limited; target `ledge::audit` in the node's log): `action` names it (`CreateTopics`), `resource_type`/`resource_name`
    /// what it changed, `outcome` whether it was done (`Err` with the error text if not).
    /// Call it once per resource changed, after the change was decided.
    pub fn record_change(
        &self,
        action: &str,
        resource_type: ResourceType,
        resource_name: &str,
        outcome: Result<(), &str>,
    ) {
        super::audit::record(
            self.audit.as_deref(),
            &AuditEvent::admin_change(
                &self.identity,
                action,
                resource_type,
                resource_name,
                outcome,
            ),
        );
    }

    /// The [`Denied`] error for `operation` on the resource, for a caller that decided
    /// itself (with [`Access::allows_on_some`], say).
    pub fn denied(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Denied {
        Denied {
            principal: self.principal_text().into_owned(),
            operation: operation.name(),
            resource_type: resource_type.name(),
            resource_name: resource_name.to_owned(),
        }
    }

    fn decide(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        match &self.authorizer {
            None => true,
            Some(authorizer) => authorizer
                .authorize(
                    &self.principal_text(),
                    self.identity.host,
                    operation,
                    resource_type,
                    resource_name,
                )
                .is_allowed(),
        }
    }

    fn principal_text(&self) -> std::borrow::Cow<'_, str> {
        if self.principal.is_empty() {
            std::borrow::Cow::Owned(self.identity.principal.to_string())
        } else {
            std::borrow::Cow::Borrowed(&self.principal)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::security::acl::{AclBinding, AclPermission, CLUSTER_NAME, PatternType};
    use crate::security::identity::AuthMethod;
    use crate::security::principal::KafkaPrincipal;

    fn alice() -> ClientIdentity {
        ClientIdentity {
            principal: "User:alice".parse::<KafkaPrincipal>().unwrap(),
            host: IpAddr::from([10, 0, 0, 7]),
            method: AuthMethod::Certificate,
        }
    }

    fn authorizer(bindings: &[AclBinding]) -> Arc<Authorizer> {
        let mut authorizer = Authorizer::new(AuthorizerConfig::default()).unwrap();
        for binding in bindings {
            authorizer.add(binding.clone()).unwrap();
        }
        Arc::new(authorizer)
    }

    fn allow(operation: AclOperation, resource_type: ResourceType, name: &str) -> AclBinding {
        AclBinding::new(
            resource_type,
            name,
            PatternType::Literal,
            "User:alice",
            "*",
            operation,
            AclPermission::Allow,
        )
        .unwrap()
    }

    #[test]
    fn unrestricted_access_allows_everything() {
        let access = Access::unrestricted(alice());
        assert!(!access.is_enforced());
        assert!(access.allows(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME));
        assert!(access.allows_on_some(AclOperation::Write, ResourceType::Topic));
    }

    #[test]
    fn enforced_access_follows_the_acls_and_names_the_denial() {
        let access = Access::enforced(
            alice(),
            authorizer(&[allow(AclOperation::Write, ResourceType::Topic, "orders")]),
        );
        assert!(access.is_enforced());
        assert!(access.allows(AclOperation::Write, ResourceType::Topic, "orders"));
        assert!(access.allows_silently(AclOperation::Describe, ResourceType::Topic, "orders"));
        assert!(access.allows_on_some(AclOperation::Write, ResourceType::Topic));
        let denied = access
            .check(AclOperation::Read, ResourceType::Topic, "orders")
            .unwrap_err();
        assert_eq!(denied.to_string(), "User:alice may not Read Topic:orders");
        assert!(!access.allows_silently(AclOperation::Write, ResourceType::Topic, "payments"));
        assert!(!access.allows_on_some(AclOperation::Write, ResourceType::Group));
    }

    #[test]
    fn without_acls_denies_all_but_super_users() {
        let access = Access::without_acls(alice(), AuthorizerConfig::default());
        assert!(!access.allows(AclOperation::Describe, ResourceType::Topic, "orders"));
        let super_user = Access::without_acls(
            alice(),
            AuthorizerConfig {
                super_users: vec!["User:alice".to_owned()],
                ..AuthorizerConfig::default()
            },
        );
        assert!(super_user.allows(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME));
    }

    // Goal: a denial through `check` is one `authorization_denied` line in the audit log
    // naming principal, host, operation and resource; a silent check (a listing) and an
    // allowed one add nothing; a change through `record_change` is one `admin_change` line
    // with its outcome and error.
    #[test]
    fn denials_and_changes_go_to_the_audit_log() {
        use crate::security::audit::{AuditLog, AuditSettings};
        let (log, queue) = AuditLog::with_queue(
            &AuditSettings::default(),
            Arc::new(crate::clock::ManualClock::new(1_796_655_267_000)),
        );
        let log = Arc::new(log);
        let access = Access::enforced(
            alice(),
            authorizer(&[allow(AclOperation::Write, ResourceType::Topic, "orders")]),
        )
        .with_audit(Some(Arc::clone(&log)));
        assert!(access.allows(AclOperation::Write, ResourceType::Topic, "orders"));
        assert!(!access.allows_silently(AclOperation::Read, ResourceType::Topic, "orders"));
        assert!(queue.drain().is_empty());
        access
            .check(AclOperation::Read, ResourceType::Topic, "orders")
            .unwrap_err();
        let lines = queue.drain();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let fields: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(fields["event"], "authorization_denied");
        assert_eq!(fields["principal"], "User:alice");
        assert_eq!(fields["host"], "10.0.0.7");
        assert_eq!(fields["method"], "certificate");
        assert_eq!(fields["operation"], "Read");
        assert_eq!(fields["resource_type"], "Topic");
        assert_eq!(fields["resource_name"], "orders");
        assert_eq!(fields["outcome"], "denied");

        access.record_change("CreateTopics", ResourceType::Topic, "payments", Ok(()));
        access.record_change(
            "DeleteAcls",
            ResourceType::Cluster,
            CLUSTER_NAME,
            Err("security store is read-only"),
        );
        let lines = queue.drain();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let created: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(created["event"], "admin_change");
        assert_eq!(created["operation"], "CreateTopics");
        assert_eq!(created["resource_name"], "payments");
        assert_eq!(created["outcome"], "done");
        assert_eq!(created["error"], serde_json::Value::Null);
        let failed: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(failed["outcome"], "failed");
        assert_eq!(failed["error"], "security store is read-only");
        assert_eq!(failed["resource_type"], "Cluster");
    }
}

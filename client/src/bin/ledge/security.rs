//! `ledge user ...` (SASL users' SCRAM credentials) and `ledge acl ...` (ACLs, in
//! kafka-acls' syntax).

use std::io::BufRead;

use anyhow::{Context, bail};
use ledge_client::security::{AclBinding, AclFilter, codes};
use ledge_client::{Admin, Client};
use serde_json::json;

use crate::args::{AclArgs, AclCommand, AclListArgs, Format, QuotaCommand, UserCommand};
use crate::output::{print, table};

/// The only name of the cluster resource.
const CLUSTER_NAME: &str = "kafka-cluster";

pub(crate) async fn run_user(client: &Client, command: UserCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        UserCommand::Create(arguments) => {
            let password = read_password()?;
            admin
                .create_user(
                    &arguments.name,
                    &arguments.mechanism,
                    &password,
                    arguments.iterations,
                )
                .await
                .context("cannot create user")?;
            print(&format!(
                "Created user {} ({}, {} iterations).",
                arguments.name, arguments.mechanism, arguments.iterations
            ))
        }
        UserCommand::List(arguments) => {
            let users = admin.list_users().await.context("cannot list users")?;
            match arguments.format {
                Format::Json => {
                    let users: Vec<_> = users
                        .iter()
                        .map(|user| {
                            let credentials: Vec<_> = user
                                .credentials
                                .iter()
                                .map(|(mechanism, iterations)| {
                                    json!({"mechanism": mechanism, "iterations": iterations})
                                })
                                .collect();
                            json!({"name": user.name, "credentials": credentials})
                        })
                        .collect();
                    print(&serde_json::to_string(&users)?)
                }
                Format::Table if users.is_empty() => {
                    print("No users. Create one with: ledge user create NAME --password-stdin")
                }
                Format::Table => {
                    let mut output = table(&["NAME", "MECHANISM", "ITERATIONS"], &[2]);
                    for user in &users {
                        for (mechanism, iterations) in &user.credentials {
                            output.add_row(vec![
                                user.name.clone(),
                                mechanism.clone(),
                                iterations.to_string(),
                            ]);
                        }
                    }
                    print(&output.to_string())
                }
            }
        }
        UserCommand::Delete(arguments) => {
            admin
                .delete_user(&arguments.name, arguments.mechanism.as_deref())
                .await
                .context("cannot delete user")?;
            match arguments.mechanism {
                Some(mechanism) => print(&format!(
                    "Deleted the {mechanism} credential of user {}.",
                    arguments.name
                )),
                None => print(&format!("Deleted user {}.", arguments.name)),
            }
        }
    }
}

/// The first line of standard input, without its line end; refused when empty.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input (--password-stdin reads its first line)");
    }
    Ok(password)
}

/// Each (resource type code, name) the options name.
fn resources(
    topic: &[String],
    group: &[String],
    cluster: bool,
    transactional_id: &[String],
    module: &[String],
    transform: &[String],
) -> anyhow::Result<Vec<(i8, String)>> {
    let code = |name: &str| {
        codes::code(&codes::RESOURCE_TYPES, name).context("resource type table is complete")
    };
    let mut out = Vec::new();
    for (kind, names) in [
        ("Topic", topic),
        ("Group", group),
        ("TransactionalId", transactional_id),
        ("Module", module),
        ("Transform", transform),
    ] {
        for name in names {
            if name.is_empty() {
                bail!("a {kind} name must not be empty");
            }
            out.push((code(kind)?, name.clone()));
        }
    }
    if cluster {
        out.push((code("Cluster")?, CLUSTER_NAME.to_owned()));
    }
    Ok(out)
}

fn operation_codes(operations: &[String]) -> anyhow::Result<Vec<i8>> {
    operations
        .iter()
        .map(|name| {
            codes::code(&codes::OPERATIONS, name).with_context(|| {
                format!(
                    "unknown operation {name:?}: use one of {}",
                    names(&codes::OPERATIONS)
                )
            })
        })
        .collect()
}

fn names(table: &[(&str, i8)]) -> String {
    table
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pattern type code of `name`; filters also take `any` and `match`.
fn pattern_code(name: &str, filter: bool) -> anyhow::Result<i8> {
    if filter {
        match name.to_ascii_lowercase().as_str() {
            "any" => return Ok(codes::ANY),
            "match" => return Ok(codes::MATCH),
            _ => {}
        }
    }
    codes::code(&codes::PATTERN_TYPES, name).with_context(|| {
        if filter {
            format!("unknown resource pattern type {name:?}: use any, match, literal or prefixed")
        } else {
            format!("unknown resource pattern type {name:?}: use literal or prefixed")
        }
    })
}

/// `(principal, permission code)` for each `--allow-principal` and `--deny-principal`.
fn principals(arguments: &AclArgs) -> anyhow::Result<Vec<(String, i8)>> {
    let permission =
        |name: &str| codes::code(&codes::PERMISSIONS, name).context("permission table");
    let mut out = Vec::new();
    for principal in &arguments.allow_principal {
        out.push((principal.clone(), permission("Allow")?));
    }
    for principal in &arguments.deny_principal {
        out.push((principal.clone(), permission("Deny")?));
    }
    Ok(out)
}

fn acl_resources(arguments: &AclArgs) -> anyhow::Result<Vec<(i8, String)>> {
    let resources = resources(
        &arguments.topic,
        &arguments.group,
        arguments.cluster,
        &arguments.transactional_id,
        &arguments.module,
        &arguments.transform,
    )?;
    if resources.is_empty() {
        bail!(
            "name a resource: --topic, --group, --cluster, --transactional-id, --module or --transform"
        );
    }
    Ok(resources)
}

/// The bindings `ledge acl add` makes: every principal x operation x resource x host.
fn bindings(arguments: &AclArgs) -> anyhow::Result<Vec<AclBinding>> {
    let principals = principals(arguments)?;
    if principals.is_empty() {
        bail!("name a principal: --allow-principal or --deny-principal (e.g. User:alice)");
    }
    let resources = acl_resources(arguments)?;
    let pattern_type = pattern_code(&arguments.resource_pattern_type, false)?;
    let mut operations = operation_codes(&arguments.operation)?;
    if operations.is_empty() {
        operations = operation_codes(&["All".to_owned()])?;
    }
    let hosts = if arguments.host.is_empty() {
        vec!["*".to_owned()]
    } else {
        arguments.host.clone()
    };
    let mut out = Vec::new();
    for (resource_type, resource_name) in &resources {
        for (principal, permission) in &principals {
            for operation in &operations {
                for host in &hosts {
                    out.push(AclBinding {
                        resource_type: *resource_type,
                        resource_name: resource_name.clone(),
                        pattern_type,
                        principal: principal.clone(),
                        host: host.clone(),
                        operation: *operation,
                        permission: *permission,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The filters `ledge acl remove` sends: every resource, and the principals, operations and
/// hosts given (any where none are).
fn remove_filters(arguments: &AclArgs) -> anyhow::Result<Vec<AclFilter>> {
    let resources = acl_resources(arguments)?;
    let pattern_type = pattern_code(&arguments.resource_pattern_type, false)?;
    let principals: Vec<(Option<String>, i8)> = match principals(arguments)? {
        principals if principals.is_empty() => vec![(None, codes::ANY)],
        principals => principals
            .into_iter()
            .map(|(principal, permission)| (Some(principal), permission))
            .collect(),
    };
    let operations: Vec<i8> = match operation_codes(&arguments.operation)? {
        operations if operations.is_empty() => vec![codes::ANY],
        operations => operations,
    };
    let hosts: Vec<Option<String>> = if arguments.host.is_empty() {
        vec![None]
    } else {
        arguments.host.iter().cloned().map(Some).collect()
    };
    let mut out = Vec::new();
    for (resource_type, resource_name) in &resources {
        for (principal, permission) in &principals {
            for operation in &operations {
                for host in &hosts {
                    out.push(AclFilter {
                        resource_type: *resource_type,
                        resource_name: Some(resource_name.clone()),
                        pattern_type,
                        principal: principal.clone(),
                        host: host.clone(),
                        operation: *operation,
                        permission: *permission,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The filters `ledge acl list` sends: one per resource, or one for everything.
fn list_filters(arguments: &AclListArgs) -> anyhow::Result<Vec<AclFilter>> {
    let pattern_type = pattern_code(&arguments.resource_pattern_type, true)?;
    let resources = resources(
        &arguments.topic,
        &arguments.group,
        arguments.cluster,
        &arguments.transactional_id,
        &arguments.module,
        &arguments.transform,
    )?;
    let filter = |resource: Option<&(i8, String)>| AclFilter {
        resource_type: resource.map_or(codes::ANY, |(code, _)| *code),
        resource_name: resource.map(|(_, name)| name.clone()),
        pattern_type,
        principal: arguments.principal.clone(),
        host: None,
        operation: codes::ANY,
        permission: codes::ANY,
    };
    if resources.is_empty() {
        return Ok(vec![filter(None)]);
    }
    Ok(resources
        .iter()
        .map(|resource| filter(Some(resource)))
        .collect())
}

fn binding_json(binding: &AclBinding) -> serde_json::Value {
    json!({
        "principal": binding.principal,
        "host": binding.host,
        "operation": codes::name(&codes::OPERATIONS, binding.operation),
        "permission": codes::name(&codes::PERMISSIONS, binding.permission),
        "resource_type": codes::name(&codes::RESOURCE_TYPES, binding.resource_type),
        "resource_name": binding.resource_name,
        "pattern_type": codes::name(&codes::PATTERN_TYPES, binding.pattern_type),
    })
}

fn print_bindings(bindings: &[AclBinding], format: Format, empty: &str) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let bindings: Vec<_> = bindings.iter().map(binding_json).collect();
            print(&serde_json::to_string(&bindings)?)
        }
        Format::Table if bindings.is_empty() => print(empty),
        Format::Table => {
            let mut output = table(
                &[
                    "PRINCIPAL",
                    "HOST",
                    "OPERATION",
                    "PERMISSION",
                    "RESOURCE",
                    "NAME",
                    "PATTERN",
                ],
                &[],
            );
            for binding in bindings {
                output.add_row(vec![
                    binding.principal.clone(),
                    binding.host.clone(),
                    codes::name(&codes::OPERATIONS, binding.operation),
                    codes::name(&codes::PERMISSIONS, binding.permission),
                    codes::name(&codes::RESOURCE_TYPES, binding.resource_type),
                    binding.resource_name.clone(),
                    codes::name(&codes::PATTERN_TYPES, binding.pattern_type),
                ]);
            }
            print(&output.to_string())
        }
    }
}

pub(crate) async fn run_acl(client: &Client, command: AclCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        AclCommand::Add(arguments) => {
            let bindings = bindings(&arguments)?;
            let count = bindings.len();
            admin
                .create_acls(bindings)
                .await
                .context("cannot add ACLs")?;
            print(&format!("Added {count} ACL(s)."))
        }
        AclCommand::List(arguments) => {
            let mut listed: Vec<AclBinding> = Vec::new();
            for filter in list_filters(&arguments)? {
                for binding in admin.list_acls(filter).await.context("cannot list ACLs")? {
                    if !listed.contains(&binding) {
                        listed.push(binding);
                    }
                }
            }
            print_bindings(
                &listed,
                arguments.format,
                "No ACLs. Add one with: ledge acl add --allow-principal User:NAME --operation Read --topic TOPIC",
            )
        }
        AclCommand::Remove(arguments) => {
            let removed = admin
                .delete_acls(remove_filters(&arguments)?)
                .await
                .context("cannot remove ACLs")?;
            if removed.is_empty() {
                bail!("no ACL matches; nothing was removed (see ledge acl list)");
            }
            print(&format!("Removed {} ACL(s).", removed.len()))
        }
    }
}

/// `ledge quota set|list|remove`.
pub(crate) async fn run_quota(client: &Client, command: QuotaCommand) -> anyhow::Result<()> {
    use ledge_client::quotas::{CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE};
    let admin = Admin::new(client);
    let entity = |user: &Option<String>| match user {
        Some(user) => format!("user {user}"),
        None => "the default user".to_owned(),
    };
    match command {
        QuotaCommand::Set(arguments) => {
            let mut set = Vec::new();
            if let Some(rate) = arguments.producer_byte_rate {
                set.push((PRODUCER_BYTE_RATE, rate));
            }
            if let Some(rate) = arguments.consumer_byte_rate {
                set.push((CONSUMER_BYTE_RATE, rate));
            }
            if set.is_empty() {
                anyhow::bail!("give --producer-byte-rate, --consumer-byte-rate or both");
            }
            admin
                .alter_quota(arguments.name.as_deref(), &set, &[])
                .await
                .context("cannot set quota")?;
            let values: Vec<String> = set
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            print(&format!(
                "Set {} for {}.",
                values.join(", "),
                entity(&arguments.name)
            ))
        }
        QuotaCommand::List(arguments) => {
            let quotas = admin.list_quotas().await.context("cannot list quotas")?;
            match arguments.format {
                Format::Json => {
                    let quotas: Vec<_> = quotas
                        .iter()
                        .map(|quota| {
                            json!({
                                "user": quota.user,
                                "default": quota.user.is_none(),
                                PRODUCER_BYTE_RATE: quota.producer_byte_rate,
                                CONSUMER_BYTE_RATE: quota.consumer_byte_rate,
                            })
                        })
                        .collect();
                    print(&serde_json::to_string(&quotas)?)
                }
                Format::Table if quotas.is_empty() => print(
                    "No quotas. Set one with: ledge quota set USER --producer-byte-rate BYTES",
                ),
                Format::Table => {
                    let mut output =
                        table(&["USER", PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE], &[1, 2]);
                    let shown = |value: Option<u64>| {
                        value.map_or_else(|| "-".to_owned(), |v| v.to_string())
                    };
                    for quota in &quotas {
                        output.add_row(vec![
                            quota.user.clone().unwrap_or_else(|| "<default>".to_owned()),
                            shown(quota.producer_byte_rate),
                            shown(quota.consumer_byte_rate),
                        ]);
                    }
                    print(&output.to_string())
                }
            }
        }
        QuotaCommand::Remove(arguments) => {
            let mut remove = Vec::new();
            if arguments.producer_byte_rate || !arguments.consumer_byte_rate {
                remove.push(PRODUCER_BYTE_RATE);
            }
            if arguments.consumer_byte_rate || !arguments.producer_byte_rate {
                remove.push(CONSUMER_BYTE_RATE);
            }
            admin
                .alter_quota(arguments.name.as_deref(), &[], &remove)
                .await
                .context("cannot remove quota")?;
            print(&format!(
                "Removed {} of {}.",
                remove.join(", "),
                entity(&arguments.name)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_makes_every_principal_operation_and_resource() {
        // Goal: kafka-acls' product: 2 principals x 2 operations x 2 resources, host *,
        // operation names in any case.
        let arguments = AclArgs {
            allow_principal: vec!["User:alice".into()],
            deny_principal: vec!["User:bob".into()],
            operation: vec!["read".into(), "DESCRIBE_CONFIGS".into()],
            topic: vec!["orders".into()],
            cluster: true,
            resource_pattern_type: "literal".into(),
            ..AclArgs::default()
        };
        let made = bindings(&arguments).unwrap();
        assert_eq!(made.len(), 8);
        assert!(made.iter().all(|binding| binding.host == "*"));
        assert!(
            made.iter()
                .any(|binding| binding.resource_name == CLUSTER_NAME
                    && binding.principal == "User:bob"
                    && binding.permission == 2
                    && binding.operation == 10)
        );
    }

    #[test]
    fn bad_acl_arguments_are_refused_before_connecting() {
        // Goal: unknown operation, no principal, no resource and a filter-only pattern type
        // in add are each refused with a line that says what to do.
        let base = AclArgs {
            allow_principal: vec!["User:alice".into()],
            topic: vec!["orders".into()],
            resource_pattern_type: "literal".into(),
            ..AclArgs::default()
        };
        let unknown = AclArgs {
            operation: vec!["Fly".into()],
            ..base.clone()
        };
        assert!(
            bindings(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown operation")
        );
        let nobody = AclArgs {
            allow_principal: Vec::new(),
            ..base.clone()
        };
        assert!(
            bindings(&nobody)
                .unwrap_err()
                .to_string()
                .contains("name a principal")
        );
        let nothing = AclArgs {
            topic: Vec::new(),
            ..base.clone()
        };
        assert!(
            bindings(&nothing)
                .unwrap_err()
                .to_string()
                .contains("name a resource")
        );
        let matching = AclArgs {
            resource_pattern_type: "match".into(),
            ..base.clone()
        };
        assert!(bindings(&matching).is_err());
    }

    #[test]
    fn remove_without_principal_or_operation_matches_any() {
        // Goal: `ledge acl remove --topic orders` removes every ACL on the literal topic.
        let arguments = AclArgs {
            topic: vec!["orders".into()],
            resource_pattern_type: "literal".into(),
            ..AclArgs::default()
        };
        let filters = remove_filters(&arguments).unwrap();
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].principal, None);
        assert_eq!(filters[0].operation, codes::ANY);
        assert_eq!(filters[0].permission, codes::ANY);
        assert_eq!(filters[0].pattern_type, 3);
    }
}

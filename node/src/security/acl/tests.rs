//! The authorizer against cases ported from Kafka's `StandardAuthorizerTest`,
//! `ResourcePatternFilterTest` and `AclBindingFilter` rules, validation errors, wire codes and
//! names, and a proptest against a naive scan of every binding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use AclOperation::*;
use AclPermission::{Allow, Deny};
use PatternType::{Literal, Prefixed};
use ResourceType::{Cluster, Group, Topic};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const HOST1: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
const HOST2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    host: &str,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    AclBinding::new(
        resource_type,
        name,
        pattern,
        principal,
        host,
        operation,
        permission,
    )
    .unwrap()
}

fn authorizer_with(config: AuthorizerConfig, acls: &[AclBinding]) -> Authorizer {
    let mut authorizer = Authorizer::new(config).unwrap();
    for binding in acls {
        assert!(authorizer.add(binding.clone()).unwrap());
    }
    authorizer
}

fn authorizer(acls: &[AclBinding]) -> Authorizer {
    authorizer_with(AuthorizerConfig::default(), acls)
}

fn user(name: &str) -> String {
    format!("User:{name}")
}

/// The outcomes for `user` from `host` over `actions`, like Kafka's tests' lists.
fn outcomes(
    authorizer: &Authorizer,
    name: &str,
    host: IpAddr,
    actions: &[(AclOperation, ResourceType, &str)],
) -> Vec<Outcome> {
    actions
        .iter()
        .map(|(operation, kind, resource)| {
            authorizer
                .authorize(&user(name), host, *operation, *kind, resource)
                .outcome
        })
        .collect()
}

use Outcome::{Allowed as A, Denied as D};

// --- StandardAuthorizerTest ------------------------------------------------------------

#[test]
fn simple_authorizations() {
    // testSimpleAuthorizations: "foo" PREFIXED for User:*; "bar" LITERAL on groups.
    let authorizer = authorizer(&[
        acl(Topic, "foo", Prefixed, "User:*", "*", Read, Allow),
        acl(Topic, "foo", Prefixed, "User:*", "*", Write, Allow),
        acl(Group, "bar", Literal, "User:*", "*", DescribeConfigs, Allow),
        acl(Group, "bar", Literal, "User:*", "*", AlterConfigs, Allow),
    ]);
    assert_eq!(
        outcomes(&authorizer, "bob", LOCAL, &[(Read, Topic, "foo_")]),
        [A]
    );
    assert_eq!(
        outcomes(&authorizer, "fred", LOCAL, &[(AlterConfigs, Group, "bar")]),
        [A]
    );
    // The same name under another resource type is another resource.
    assert_eq!(
        outcomes(&authorizer, "bob", LOCAL, &[(Read, Group, "foo_")]),
        [D]
    );
}

#[test]
fn deny_precedence_with_operation_all() {
    // testDenyPrecedenceWithOperationAll.
    let authorizer = authorizer(&[
        acl(Topic, "foo", Literal, "User:alice", "*", All, Deny),
        acl(Topic, "foo", Prefixed, "User:alice", "*", Read, Allow),
        acl(Topic, "foo", Literal, "User:*", "*", All, Deny),
        acl(Topic, "foo", Prefixed, "User:*", "*", Describe, Allow),
    ]);
    assert_eq!(
        outcomes(
            &authorizer,
            "alice",
            LOCAL,
            &[
                (Write, Topic, "foo"),
                (Read, Topic, "foo"),
                (Describe, Topic, "foo"),
                (Read, Topic, "foobar")
            ]
        ),
        [D, D, D, A]
    );
    assert_eq!(
        outcomes(
            &authorizer,
            "bob",
            LOCAL,
            &[
                (Describe, Topic, "foo"),
                (Read, Topic, "foo"),
                (Write, Topic, "foo"),
                (Describe, Topic, "foobaz"),
                (Read, Topic, "foobaz"),
            ]
        ),
        [D, D, D, A, D]
    );
    // The deny names its binding; bob's READ on foobaz is denied by no matching allow.
    let decision = authorizer.authorize("User:alice", LOCAL, Read, Topic, "foo");
    assert_eq!(decision.binding().map(|b| b.permission), Some(Deny));
    let decision = authorizer.authorize("User:bob", LOCAL, Read, Topic, "foobaz");
    assert_eq!(decision.rule, DecisionRule::NoMatchingAllow);
}

#[test]
fn topic_acl_with_operation_all() {
    // testTopicAclWithOperationAll.
    let authorizer = authorizer(&[
        acl(Topic, "foo", Literal, "User:*", "*", All, Allow),
        acl(Topic, "bar", Prefixed, "User:alice", "*", All, Allow),
        acl(Topic, "baz", Literal, "User:bob", "*", All, Allow),
    ]);
    assert_eq!(
        outcomes(
            &authorizer,
            "alice",
            LOCAL,
            &[
                (Write, Topic, "foo"),
                (DescribeConfigs, Topic, "bar"),
                (Describe, Topic, "baz")
            ]
        ),
        [A, A, D]
    );
    assert_eq!(
        outcomes(
            &authorizer,
            "bob",
            LOCAL,
            &[
                (Write, Topic, "foo"),
                (Read, Topic, "bar"),
                (Describe, Topic, "baz")
            ]
        ),
        [A, D, A]
    );
    assert_eq!(
        outcomes(
            &authorizer,
            "malory",
            LOCAL,
            &[
                (Describe, Topic, "foo"),
                (Write, Topic, "bar"),
                (Read, Topic, "baz")
            ]
        ),
        [A, D, D]
    );
}

#[test]
fn host_address_acls() {
    // testHostAddressAclValidation.
    let authorizer = authorizer(&[
        acl(
            Topic,
            "foo",
            Literal,
            "User:alice",
            "192.168.1.1",
            Read,
            Deny,
        ),
        acl(Topic, "foo", Literal, "User:alice", "*", Read, Allow),
        acl(
            Topic,
            "bar",
            Literal,
            "User:bob",
            "192.168.1.2",
            Read,
            Allow,
        ),
        acl(
            Topic,
            "bar",
            Literal,
            "User:*",
            "127.0.0.1",
            Describe,
            Allow,
        ),
    ]);
    let actions = [
        (Read, Topic, "foo"),
        (Read, Topic, "bar"),
        (Describe, Topic, "bar"),
    ];
    assert_eq!(outcomes(&authorizer, "alice", LOCAL, &actions), [A, D, A]);
    assert_eq!(outcomes(&authorizer, "alice", HOST1, &actions), [D, D, D]);
    assert_eq!(outcomes(&authorizer, "alice", HOST2, &actions), [A, D, D]);
    assert_eq!(outcomes(&authorizer, "bob", LOCAL, &actions), [D, D, A]);
    assert_eq!(outcomes(&authorizer, "bob", HOST1, &actions), [D, D, D]);
    assert_eq!(outcomes(&authorizer, "bob", HOST2, &actions), [D, A, A]);
}

#[test]
fn hosts_compare_as_addresses_not_text() {
    // Kafka compares host text; Ledge compares addresses, so "::1" matches however the
    // address is written, and an IPv4-mapped IPv6 peer matches its IPv4 ACL.
    let authorizer = authorizer(&[
        acl(
            Topic,
            "t",
            Literal,
            "User:a",
            "0:0:0:0:0:0:0:1",
            Read,
            Allow,
        ),
        acl(Topic, "t", Literal, "User:a", "10.0.0.1", Write, Allow),
        acl(
            Topic,
            "t",
            Literal,
            "User:a",
            "::ffff:10.0.0.2",
            Create,
            Allow,
        ),
    ]);
    assert!(
        authorizer
            .authorize("User:a", IpAddr::V6(Ipv6Addr::LOCALHOST), Read, Topic, "t")
            .is_allowed()
    );
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
    assert!(
        authorizer
            .authorize("User:a", mapped, Write, Topic, "t")
            .is_allowed()
    );
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert!(
        authorizer
            .authorize("User:a", v4, Create, Topic, "t")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:a", LOCAL, Write, Topic, "t")
            .is_allowed()
    );
}

#[test]
fn prefix_acls() {
    // testPrefixAcls.
    let authorizer = authorizer(&[
        acl(Topic, "fooa", Prefixed, "User:alice", "*", All, Allow),
        acl(Topic, "foobar", Literal, "User:bob", "*", All, Allow),
        acl(Topic, "f", Prefixed, "User:bob", "*", All, Allow),
    ]);
    assert_eq!(
        outcomes(
            &authorizer,
            "bob",
            LOCAL,
            &[
                (Write, Topic, "foobarr"),
                (Read, Topic, "goobar"),
                (Read, Topic, "fooa")
            ]
        ),
        [A, D, A]
    );
    assert_eq!(
        outcomes(
            &authorizer,
            "alice",
            LOCAL,
            &[
                (Describe, Topic, "fooa"),
                (Write, Topic, "bar"),
                (Read, Topic, "baz")
            ]
        ),
        [A, D, D]
    );
}

/// Kafka's `addManyAcls` and `testAuthorizationWithManyAcls`.
#[test]
fn many_acls() {
    let authorizer = authorizer(&[
        acl(Topic, "green2", Literal, "User:*", "*", Read, Allow),
        acl(Topic, "green", Prefixed, "User:bob", "*", Read, Allow),
        acl(Topic, "betamax4", Literal, "User:bob", "*", Read, Allow),
        acl(Topic, "betamax", Literal, "User:bob", "*", Read, Allow),
        acl(Topic, "beta", Prefixed, "User:*", "*", Read, Allow),
        acl(Topic, "alpha", Prefixed, "User:*", "*", Read, Allow),
        acl(Topic, "alp", Prefixed, "User:bob", "*", Read, Deny),
        acl(Group, "*", Literal, "User:bob", "*", Write, Allow),
        acl(Group, "wheel", Literal, "User:*", "*", Write, Deny),
    ]);
    assert_eq!(
        outcomes(
            &authorizer,
            "bob",
            LOCAL,
            &[(Read, Topic, "green1"), (Write, Group, "wheel")]
        ),
        [A, D]
    );
    assert_eq!(
        outcomes(
            &authorizer,
            "bob",
            LOCAL,
            &[
                (Read, Topic, "alpha"),
                (Write, Group, "arbitrary"),
                (Read, Topic, "ala")
            ]
        ),
        [D, A, D]
    );
    // Beyond Kafka's test: what decided each.
    let alpha = authorizer.authorize("User:bob", LOCAL, Read, Topic, "alpha");
    assert_eq!(
        alpha
            .binding()
            .map(|b| (b.resource_name.as_str(), b.permission)),
        Some(("alp", Deny))
    );
    let fred_alpha = authorizer.authorize("User:fred", LOCAL, Read, Topic, "alphabet");
    assert_eq!(
        fred_alpha
            .binding()
            .map(|b| (b.resource_name.as_str(), b.permission)),
        Some(("alpha", Allow))
    );
    let ala = authorizer.authorize("User:bob", LOCAL, Read, Topic, "ala");
    assert_eq!(ala.rule, DecisionRule::NoAclForResource);
    let betamax = authorizer.authorize("User:bob", LOCAL, Read, Topic, "betamax");
    assert!(betamax.is_allowed());
}

#[test]
fn find_result_implication() {
    // testFindResultImplication: ALLOW implications, and DENY has none.
    let implies_describe = [Describe, Read, Write, Delete, Alter];
    let implies_describe_configs = [DescribeConfigs, AlterConfigs];
    for granted in AclOperation::ALL {
        for requested in AclOperation::ALL.into_iter().filter(|op| *op != All) {
            let expected_allow = granted == All
                || granted == requested
                || (requested == Describe && implies_describe.contains(&granted))
                || (requested == DescribeConfigs && implies_describe_configs.contains(&granted));
            let allow = authorizer(&[acl(Topic, "t", Literal, "User:u", "*", granted, Allow)]);
            assert_eq!(
                allow
                    .authorize("User:u", LOCAL, requested, Topic, "t")
                    .is_allowed(),
                expected_allow,
                "ALLOW {granted} for {requested}"
            );
            // A DENY of `granted` beside an ALLOW ALL: only All or the same operation deny.
            let deny = authorizer(&[
                acl(Topic, "t", Literal, "User:u", "*", granted, Deny),
                acl(Topic, "t", Literal, "User:u", "*", All, Allow),
            ]);
            let expected_deny = granted == All || granted == requested;
            assert_eq!(
                !deny
                    .authorize("User:u", LOCAL, requested, Topic, "t")
                    .is_allowed(),
                expected_deny,
                "DENY {granted} for {requested}"
            );
        }
    }
}

#[test]
fn read_deny_does_not_deny_describe() {
    let authorizer = authorizer(&[
        acl(Topic, "t", Literal, "User:u", "*", Read, Deny),
        acl(Topic, "t", Literal, "User:u", "*", Write, Allow),
    ]);
    assert!(
        authorizer
            .authorize("User:u", LOCAL, Describe, Topic, "t")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:u", LOCAL, Read, Topic, "t")
            .is_allowed()
    );
}

#[test]
fn principal_matching() {
    // testFindResultPrincipalMatching: an exact principal or User:*, nothing else.
    let authorizer = authorizer(&[
        acl(Topic, "a", Literal, "User:alice", "*", Read, Allow),
        acl(Topic, "b", Literal, "User:*", "*", Read, Allow),
        // Only `User:*` is a wildcard: `Group:*` names a principal called `*`.
        acl(Topic, "c", Literal, "Group:*", "*", Read, Allow),
    ]);
    assert!(
        authorizer
            .authorize("User:alice", LOCAL, Read, Topic, "a")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:bob", LOCAL, Read, Topic, "a")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("Group:alice", LOCAL, Read, Topic, "a")
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("User:bob", LOCAL, Read, Topic, "b")
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("Group:x", LOCAL, Read, Topic, "b")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("Group:x", LOCAL, Read, Topic, "c")
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("Group:*", LOCAL, Read, Topic, "c")
            .is_allowed()
    );
}

#[test]
fn super_users_are_allowed_everything() {
    // testGetConfiguredSuperUsers plus a DENY ALL that does not stop them.
    let config = AuthorizerConfig {
        super_users: vec!["User:admin".into(), "Group:ops".into()],
        ..AuthorizerConfig::default()
    };
    let authorizer = authorizer_with(
        config,
        &[acl(Topic, "*", Literal, "User:*", "*", All, Deny)],
    );
    for principal in ["User:admin", "Group:ops"] {
        for operation in AclOperation::ALL {
            let decision = authorizer.authorize(principal, HOST1, operation, Topic, "any");
            assert_eq!(decision.outcome, Outcome::Allowed);
            assert_eq!(decision.rule, DecisionRule::SuperUser);
            assert_eq!(decision.binding(), None);
        }
    }
    assert!(
        !authorizer
            .authorize("User:ops", HOST1, Read, Topic, "any")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:bob", HOST1, Read, Topic, "any")
            .is_allowed()
    );
    let invalid = AuthorizerConfig {
        super_users: vec!["admin".into()],
        ..Default::default()
    };
    assert!(matches!(
        Authorizer::new(invalid),
        Err(AclError::InvalidPrincipal { .. })
    ));
}

#[test]
fn allow_everyone_if_no_acl_found() {
    // testAllowEveryoneIfNoAclFoundConfigEnabled/Disabled: the default only applies to
    // resources with no ACL at all; a resource with ACLs for others is denied.
    let acls = [acl(
        Topic,
        "topic1",
        Literal,
        "User:alice",
        "*",
        Read,
        Allow,
    )];
    let enabled = authorizer_with(
        AuthorizerConfig {
            allow_everyone_if_no_acl_found: true,
            ..Default::default()
        },
        &acls,
    );
    let disabled = authorizer(&acls);
    assert!(!AuthorizerConfig::default().allow_everyone_if_no_acl_found);

    let bob_topic1 = enabled.authorize("User:bob", LOCAL, Read, Topic, "topic1");
    assert_eq!(
        (bob_topic1.outcome, bob_topic1.rule),
        (D, DecisionRule::NoMatchingAllow)
    );
    let bob_topic2 = enabled.authorize("User:bob", LOCAL, Read, Topic, "topic2");
    assert_eq!(
        (bob_topic2.outcome, bob_topic2.rule),
        (A, DecisionRule::NoAclForResource)
    );

    let bob_topic1 = disabled.authorize("User:bob", LOCAL, Read, Topic, "topic1");
    assert_eq!(
        (bob_topic1.outcome, bob_topic1.rule),
        (D, DecisionRule::NoMatchingAllow)
    );
    let bob_topic2 = disabled.authorize("User:bob", LOCAL, Read, Topic, "topic2");
    assert_eq!(
        (bob_topic2.outcome, bob_topic2.rule),
        (D, DecisionRule::NoAclForResource)
    );

    let alice = disabled.authorize("User:alice", LOCAL, Read, Topic, "topic1");
    assert_eq!(alice.outcome, A);
    assert_eq!(alice.binding(), Some(&acls[0]));
}

#[test]
fn wildcard_resource_and_host() {
    let authorizer = authorizer(&[
        acl(Topic, "*", Literal, "User:*", "*", Describe, Allow),
        acl(Topic, "*", Literal, "User:eve", "10.0.0.9", All, Deny),
    ]);
    assert!(
        authorizer
            .authorize("User:x", HOST1, Describe, Topic, "anything")
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("User:x", HOST1, Describe, Topic, "*")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:x", HOST1, Read, Topic, "anything")
            .is_allowed()
    );
    let eve_host = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    assert!(
        !authorizer
            .authorize("User:eve", eve_host, Describe, Topic, "a")
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("User:eve", HOST1, Describe, Topic, "a")
            .is_allowed()
    );
    // A PREFIXED `*` is not a wildcard: it matches names starting with `*`.
    let prefixed_star = authorizer_with(
        AuthorizerConfig::default(),
        &[acl(Topic, "*", Prefixed, "User:*", "*", Read, Allow)],
    );
    assert!(
        !prefixed_star
            .authorize("User:x", LOCAL, Read, Topic, "abc")
            .is_allowed()
    );
    assert!(
        prefixed_star
            .authorize("User:x", LOCAL, Read, Topic, "*abc")
            .is_allowed()
    );
}

#[test]
fn prefixes_longest_and_shortest() {
    // Overlapping prefixes all apply: a deny on the shortest wins over an allow on the
    // longest, and the other way round; a LITERAL that is a prefix of the name does not.
    let authorizer = authorizer(&[
        acl(Topic, "a", Prefixed, "User:u", "*", Write, Deny),
        acl(Topic, "abc", Prefixed, "User:u", "*", All, Allow),
        acl(Topic, "abcde", Prefixed, "User:u", "*", Read, Deny),
        acl(Topic, "ab", Literal, "User:u", "*", Create, Allow),
    ]);
    let check = |operation, name: &str| {
        authorizer
            .authorize("User:u", LOCAL, operation, Topic, name)
            .is_allowed()
    };
    assert!(!check(Write, "abcdef"), "shortest prefix's deny");
    assert!(!check(Read, "abcdef"), "longest prefix's deny");
    assert!(check(Read, "abcd"), "middle prefix's allow");
    assert!(check(Describe, "abcdef"), "allow All covers describe");
    assert!(!check(Create, "abx"), "ab LITERAL does not apply to abx");
    assert!(check(Create, "ab"));
    assert!(
        !check(Read, "ab"),
        "no allow for ab's read: denied, the resource has ACLs"
    );
    assert_eq!(
        authorizer
            .authorize("User:u", LOCAL, Read, Topic, "ab")
            .rule,
        DecisionRule::NoMatchingAllow
    );
    assert_eq!(
        authorizer.authorize("User:u", LOCAL, Read, Topic, "b").rule,
        DecisionRule::NoAclForResource
    );
    // The deciding deny is looked up from the longest prefix.
    let decision = authorizer.authorize("User:u", LOCAL, Read, Topic, "abcdef");
    assert_eq!(
        decision.binding().map(|b| b.resource_name.as_str()),
        Some("abcde")
    );
    // Multi-byte names: prefixes are whole characters.
    let utf8 = authorizer_with(
        AuthorizerConfig::default(),
        &[acl(Topic, "é", Prefixed, "User:u", "*", Read, Allow)],
    );
    assert!(
        utf8.authorize("User:u", LOCAL, Read, Topic, "été")
            .is_allowed()
    );
    assert!(
        !utf8
            .authorize("User:u", LOCAL, Read, Topic, "e")
            .is_allowed()
    );
}

#[test]
fn removing_acls_updates_decisions() {
    let deny = acl(Topic, "orders", Prefixed, "User:u", "*", Read, Deny);
    let allow = acl(Topic, "orders", Literal, "User:u", "*", Read, Allow);
    let mut authorizer = authorizer(&[deny.clone(), allow.clone()]);
    assert!(
        !authorizer
            .authorize("User:u", LOCAL, Read, Topic, "orders")
            .is_allowed()
    );
    assert!(authorizer.remove(&deny));
    assert!(!authorizer.remove(&deny));
    assert!(
        authorizer
            .authorize("User:u", LOCAL, Read, Topic, "orders")
            .is_allowed()
    );
    assert!(authorizer.remove(&allow));
    assert!(authorizer.is_empty());
    assert_eq!(
        authorizer
            .authorize("User:u", LOCAL, Read, Topic, "orders")
            .rule,
        DecisionRule::NoAclForResource
    );
}

// --- Adding, limits, validation --------------------------------------------------------

#[test]
fn add_is_idempotent_and_bounded() {
    let config = AuthorizerConfig {
        max_acls: 2,
        ..Default::default()
    };
    let mut authorizer = Authorizer::new(config).unwrap();
    let first = acl(Topic, "a", Literal, "User:u", "*", Read, Allow);
    assert_eq!(authorizer.add(first.clone()), Ok(true));
    assert_eq!(authorizer.add(first.clone()), Ok(false));
    assert_eq!(
        authorizer.add(acl(Topic, "b", Prefixed, "User:u", "*", Read, Allow)),
        Ok(true)
    );
    assert_eq!(authorizer.len(), 2);
    // At the limit: an existing binding is still accepted (nothing new), a new one is not.
    assert_eq!(authorizer.add(first.clone()), Ok(false));
    assert_eq!(
        authorizer.add(acl(Topic, "c", Literal, "User:u", "*", Read, Allow)),
        Err(AclError::TooManyAcls { max_acls: 2 })
    );
    assert!(authorizer.remove(&first));
    assert_eq!(
        authorizer.add(acl(Topic, "c", Literal, "User:u", "*", Read, Allow)),
        Ok(true)
    );
    assert_eq!(AuthorizerConfig::default().max_acls, DEFAULT_MAX_ACLS);
}

#[test]
fn validation_errors() {
    let new = |kind, name: &str, principal: &str, host: &str| {
        AclBinding::new(kind, name, Literal, principal, host, Read, Allow)
    };
    assert_eq!(
        new(Topic, "", "User:u", "*"),
        Err(AclError::EmptyResourceName)
    );
    assert_eq!(
        new(Cluster, "my-cluster", "User:u", "*"),
        Err(AclError::InvalidClusterName {
            name: "my-cluster".into()
        })
    );
    assert!(new(Cluster, CLUSTER_NAME, "User:u", "*").is_ok());
    for principal in ["alice", "", ":alice", "User:", "*"] {
        assert_eq!(
            new(Topic, "t", principal, "*"),
            Err(AclError::InvalidPrincipal {
                principal: principal.into()
            }),
            "{principal}"
        );
    }
    for principal in ["User:*", "User:CN=a,O=b", "Group:x:y", "User:alice"] {
        assert!(new(Topic, "t", principal, "*").is_ok(), "{principal}");
    }
    for host in ["", "localhost", "10.0.0", "10.0.0.1/24", "**"] {
        assert_eq!(
            new(Topic, "t", "User:u", host),
            Err(AclError::InvalidHost { host: host.into() }),
            "{host}"
        );
    }
    for host in ["*", "10.0.0.1", "::1", "fe80::1"] {
        assert!(new(Topic, "t", "User:u", host).is_ok(), "{host}");
    }
    // `add` validates too: a binding built field by field (or read from storage) cannot
    // skip the checks.
    let mut authorizer = Authorizer::new(AuthorizerConfig::default()).unwrap();
    let mut bad = acl(Topic, "t", Literal, "User:u", "*", Read, Allow);
    bad.host = "nowhere".into();
    assert_eq!(
        authorizer.add(bad),
        Err(AclError::InvalidHost {
            host: "nowhere".into()
        })
    );
    assert!(authorizer.is_empty());
}

#[test]
fn wire_codes_round_trip_and_refuse_any_and_unknown() {
    for kind in ResourceType::ALL {
        assert_eq!(ResourceType::from_code(kind.code()), Ok(kind));
    }
    for pattern in PatternType::ALL {
        assert_eq!(PatternType::from_code(pattern.code()), Ok(pattern));
    }
    for operation in AclOperation::ALL {
        assert_eq!(AclOperation::from_code(operation.code()), Ok(operation));
    }
    for permission in AclPermission::ALL {
        assert_eq!(AclPermission::from_code(permission.code()), Ok(permission));
    }
    for filter in PatternTypeFilter::ALL {
        assert_eq!(PatternTypeFilter::from_code(filter.code()), Ok(filter));
    }
    // Kafka's numbers.
    assert_eq!([Topic.code(), Group.code(), Cluster.code()], [2, 3, 4]);
    assert_eq!(ResourceType::TransactionalId.code(), 5);
    assert_eq!([Literal.code(), Prefixed.code()], [3, 4]);
    assert_eq!(
        [All.code(), Read.code(), IdempotentWrite.code()],
        [2, 3, 12]
    );
    assert_eq!(
        [
            DescribeConfigs.code(),
            AlterConfigs.code(),
            ClusterAction.code()
        ],
        [10, 11, 9]
    );
    assert_eq!([Deny.code(), Allow.code()], [2, 3]);

    // A binding from CreateAcls: ANY, MATCH, UNKNOWN and unknown codes are refused.
    let ok = AclBinding::from_wire(2, "orders", 3, "User:alice", "*", 3, 3).unwrap();
    assert_eq!(
        ok,
        acl(Topic, "orders", Literal, "User:alice", "*", Read, Allow)
    );
    let not_specific = |field, value| Err(AclError::NotSpecific { field, value });
    assert_eq!(
        AclBinding::from_wire(1, "t", 3, "User:a", "*", 3, 3),
        not_specific("resource type", "ANY")
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 1, "User:a", "*", 3, 3),
        not_specific("pattern type", "ANY")
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 2, "User:a", "*", 3, 3),
        not_specific("pattern type", "MATCH")
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 3, "User:a", "*", 1, 3),
        not_specific("operation", "ANY")
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 1),
        not_specific("permission type", "ANY")
    );
    let unknown = |field, code| Err(AclError::UnknownCode { field, code });
    assert_eq!(
        AclBinding::from_wire(0, "t", 3, "User:a", "*", 3, 3),
        unknown("resource type", 0)
    );
    // DelegationToken (6) and User (7) are Kafka types Ledge does not have.
    assert_eq!(
        AclBinding::from_wire(6, "t", 3, "User:a", "*", 3, 3),
        unknown("resource type", 6)
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 0, "User:a", "*", 3, 3),
        unknown("pattern type", 0)
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 3, "User:a", "*", 13, 3),
        unknown("operation", 13)
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 3, "User:a", "*", -1, 3),
        unknown("operation", -1)
    );
    assert_eq!(
        AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 0),
        unknown("permission type", 0)
    );
    assert_eq!(
        AclBinding::from_wire(LEDGE_MODULE_CODE, "m", 3, "User:a", "*", 7, 3)
            .map(|b| b.resource_type),
        Ok(ResourceType::Module)
    );

    // A filter: ANY becomes None, MATCH is kept, UNKNOWN is refused.
    let unknown = |field, code| Err(AclError::UnknownCode { field, code });
    let filter = AclBindingFilter::from_wire(1, None, 1, None, None, 1, 1).unwrap();
    assert_eq!(filter, AclBindingFilter::any());
    let filter =
        AclBindingFilter::from_wire(2, Some("t"), 2, Some("User:a"), Some("*"), 8, 2).unwrap();
    assert_eq!(filter.resource_type, Some(Topic));
    assert_eq!(filter.pattern_type, PatternTypeFilter::Match);
    assert_eq!(filter.operation, Some(Describe));
    assert_eq!(filter.permission, Some(Deny));
    assert_eq!(
        AclBindingFilter::from_wire(0, None, 1, None, None, 1, 1),
        unknown("resource type", 0)
    );
    assert_eq!(
        AclBindingFilter::from_wire(1, None, 0, None, None, 1, 1),
        unknown("pattern type", 0)
    );
    assert_eq!(
        AclBindingFilter::from_wire(1, None, 1, None, None, 0, 1),
        unknown("operation", 0)
    );
    assert_eq!(
        AclBindingFilter::from_wire(1, None, 1, None, None, 1, 9),
        unknown("permission type", 9)
    );
}

#[test]
fn cli_names_parse_and_print() {
    for operation in AclOperation::ALL {
        assert_eq!(operation.to_string().parse(), Ok(operation));
    }
    assert_eq!("DescribeConfigs".parse(), Ok(DescribeConfigs));
    assert_eq!("DESCRIBE_CONFIGS".parse(), Ok(DescribeConfigs));
    assert_eq!("describe-configs".parse(), Ok(DescribeConfigs));
    assert_eq!("read".parse(), Ok(Read));
    assert_eq!(
        "Reed".parse::<AclOperation>(),
        Err(AclError::UnknownName {
            field: "operation",
            name: "Reed".into()
        })
    );
    assert!("Any".parse::<AclOperation>().is_err());
    for kind in ResourceType::ALL {
        assert_eq!(kind.to_string().parse(), Ok(kind));
    }
    assert_eq!(
        "transactional-id".parse(),
        Ok(ResourceType::TransactionalId)
    );
    assert_eq!(
        "TRANSACTIONAL_ID".parse(),
        Ok(ResourceType::TransactionalId)
    );
    assert_eq!("prefixed".parse(), Ok(Prefixed));
    assert_eq!("LITERAL".parse(), Ok(Literal));
    assert!("match".parse::<PatternType>().is_err());
    assert_eq!("match".parse(), Ok(PatternTypeFilter::Match));
    assert_eq!("any".parse(), Ok(PatternTypeFilter::Any));
    assert_eq!("allow".parse(), Ok(Allow));
    assert_eq!("Deny".parse(), Ok(Deny));
    let binding = acl(Topic, "orders", Prefixed, "User:alice", "*", Read, Allow);
    assert_eq!(
        binding.to_string(),
        "Allow User:alice from * Read on Topic:prefixed:orders"
    );
}

#[test]
fn bindings_serialize() {
    let binding = acl(
        ResourceType::Transform,
        "t1",
        Literal,
        "User:a",
        "::1",
        Alter,
        Deny,
    );
    let json = serde_json::to_string(&binding).unwrap();
    assert_eq!(
        json,
        r#"{"resource_type":"transform","resource_name":"t1","pattern_type":"literal","principal":"User:a","host":"::1","operation":"alter","permission":"deny"}"#
    );
    assert_eq!(serde_json::from_str::<AclBinding>(&json).unwrap(), binding);
}

// --- Filters: ResourcePatternFilterTest and AccessControlEntryFilter -------------------

fn pattern_filter(
    kind: Option<ResourceType>,
    name: Option<&str>,
    pattern: PatternTypeFilter,
) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: kind,
        resource_name: name.map(str::to_owned),
        pattern_type: pattern,
        ..AclBindingFilter::any()
    }
}

fn topic(name: &str, pattern: PatternType) -> AclBinding {
    acl(Topic, name, pattern, "User:u", "*", Read, Allow)
}

/// A filter's resource type, name and pattern type, a binding, and whether they match.
type FilterCase = (
    Option<ResourceType>,
    Option<&'static str>,
    PatternTypeFilter,
    AclBinding,
    bool,
);

#[test]
fn resource_pattern_filter_matching() {
    use PatternTypeFilter as F;
    let cases: &[FilterCase] = &[
        (
            Some(Topic),
            Some("Name"),
            F::Literal,
            acl(Group, "Name", Literal, "User:u", "*", Read, Allow),
            false,
        ),
        (
            Some(Topic),
            Some("Different"),
            F::Prefixed,
            topic("Name", Prefixed),
            false,
        ),
        (
            Some(Topic),
            Some("NAME"),
            F::Literal,
            topic("Name", Literal),
            false,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Literal,
            topic("Name", Prefixed),
            false,
        ),
        (
            None,
            Some("Name"),
            F::Prefixed,
            topic("Name", Prefixed),
            true,
        ),
        (
            Some(Topic),
            None,
            F::Prefixed,
            topic("Name", Prefixed),
            true,
        ),
        (Some(Topic), None, F::Any, topic("Name", Prefixed), true),
        (Some(Topic), None, F::Match, topic("Name", Prefixed), true),
        (
            Some(Topic),
            Some("Name"),
            F::Literal,
            topic("Name", Literal),
            true,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Any,
            topic("Name", Literal),
            true,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Match,
            topic("Name", Literal),
            true,
        ),
        (
            Some(Topic),
            Some("Name-something"),
            F::Match,
            topic("Name", Literal),
            false,
        ),
        (
            Some(Topic),
            Some("*"),
            F::Literal,
            topic("*", Literal),
            true,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Literal,
            topic("*", Literal),
            false,
        ),
        (
            Some(Topic),
            Some("*"),
            F::Literal,
            topic("Name", Literal),
            false,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Any,
            topic("*", Literal),
            false,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Match,
            topic("*", Literal),
            true,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Prefixed,
            topic("Name", Prefixed),
            true,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Prefixed,
            topic("Name-something", Prefixed),
            false,
        ),
        (
            Some(Topic),
            Some("Name-something"),
            F::Prefixed,
            topic("Name", Prefixed),
            false,
        ),
        (
            Some(Topic),
            Some("Name-something"),
            F::Any,
            topic("Name", Prefixed),
            false,
        ),
        (
            Some(Topic),
            Some("Name-something"),
            F::Match,
            topic("Name", Prefixed),
            true,
        ),
        // MATCH does not match a longer prefix, nor a prefixed `*` as a wildcard.
        (
            Some(Topic),
            Some("Na"),
            F::Match,
            topic("Name", Prefixed),
            false,
        ),
        (
            Some(Topic),
            Some("Name"),
            F::Match,
            topic("*", Prefixed),
            false,
        ),
        // A literal filter ignores prefixed bindings entirely, even `*`.
        (
            Some(Topic),
            None,
            F::Literal,
            topic("Name", Prefixed),
            false,
        ),
    ];
    for (kind, name, pattern, binding, expected) in cases {
        let filter = pattern_filter(*kind, *name, *pattern);
        assert_eq!(
            filter.matches(binding),
            *expected,
            "{filter:?} vs {binding}"
        );
    }
}

#[test]
fn entry_filter_matching() {
    let binding = acl(Topic, "t", Literal, "User:alice", "10.0.0.1", Write, Deny);
    let with = |edit: fn(&mut AclBindingFilter)| {
        let mut filter = AclBindingFilter::any();
        edit(&mut filter);
        filter.matches(&binding)
    };
    assert!(with(|_| {}));
    assert!(with(|f| f.principal = Some("User:alice".into())));
    // Filters compare principals and hosts exactly: `User:*` and `*` are not wildcards here.
    assert!(!with(|f| f.principal = Some("User:*".into())));
    assert!(!with(|f| f.host = Some("*".into())));
    assert!(with(|f| f.host = Some("10.0.0.1".into())));
    assert!(with(|f| f.operation = Some(Write)));
    // ALL in a filter matches only ALL bindings.
    assert!(!with(|f| f.operation = Some(All)));
    assert!(!with(|f| f.operation = Some(Describe)));
    assert!(with(|f| f.permission = Some(Deny)));
    assert!(!with(|f| f.permission = Some(Allow)));
    assert!(AclBindingFilter::exact(&binding).matches(&binding));
    let mut other = binding.clone();
    other.operation = Read;
    assert!(!AclBindingFilter::exact(&binding).matches(&other));
}

#[test]
fn list_and_remove_matching() {
    let acls = [
        acl(Topic, "orders", Literal, "User:a", "*", Read, Allow),
        acl(Topic, "ord", Prefixed, "User:b", "*", Write, Allow),
        acl(Topic, "*", Literal, "User:c", "*", Describe, Allow),
        acl(Topic, "other", Literal, "User:a", "*", Read, Allow),
        acl(Group, "orders", Literal, "User:a", "*", Read, Allow),
    ];
    let mut authorizer = authorizer(&acls);
    let matching = pattern_filter(Some(Topic), Some("orders"), PatternTypeFilter::Match);
    let listed = authorizer.list(&matching);
    assert_eq!(listed.len(), 3);
    for binding in &acls[..3] {
        assert!(listed.contains(binding), "{binding}");
    }
    assert_eq!(authorizer.list(&AclBindingFilter::any()).len(), 5);
    assert_eq!(authorizer.bindings().count(), 5);

    let removed = authorizer.remove_matching(&matching);
    assert_eq!(removed, listed);
    assert_eq!(authorizer.len(), 2);
    assert_eq!(
        authorizer.list(&AclBindingFilter::any()),
        vec![acls[3].clone(), acls[4].clone()]
    );
    // The removed prefix no longer applies.
    assert_eq!(
        authorizer
            .authorize("User:b", LOCAL, Write, Topic, "ordinal")
            .rule,
        DecisionRule::NoAclForResource
    );
}

// --- Property: the index agrees with a scan of every binding ---------------------------

/// One authorize call's arguments.
struct Request<'a> {
    principal: &'a str,
    host: IpAddr,
    operation: AclOperation,
    kind: ResourceType,
    name: &'a str,
}

/// Kafka's rules written as plainly as possible, over every binding.
fn naive(
    acls: &[AclBinding],
    super_users: &[String],
    allow_everyone: bool,
    request: &Request<'_>,
) -> Outcome {
    let Request {
        principal,
        host,
        operation,
        kind,
        name,
    } = *request;
    if super_users.iter().any(|s| s == principal) {
        return A;
    }
    let applying: Vec<&AclBinding> = acls
        .iter()
        .filter(|b| {
            b.resource_type == kind
                && match b.pattern_type {
                    Literal => b.resource_name == name || b.resource_name == "*",
                    Prefixed => name.starts_with(&b.resource_name),
                }
        })
        .collect();
    let matching = |b: &&&AclBinding| request_matches(b, principal, host);
    let denied = applying
        .iter()
        .filter(matching)
        .any(|b| b.permission == Deny && (b.operation == All || b.operation == operation));
    if denied {
        return D;
    }
    let allowed = applying.iter().filter(matching).any(|b| {
        b.permission == Allow
            && (b.operation == All
                || b.operation == operation
                || (operation == Describe && [Read, Write, Delete, Alter].contains(&b.operation))
                || (operation == DescribeConfigs && b.operation == AlterConfigs))
    });
    match (allowed, applying.is_empty()) {
        (true, _) => A,
        (false, true) if allow_everyone => A,
        (false, _) => D,
    }
}

fn request_matches(binding: &AclBinding, principal: &str, host: IpAddr) -> bool {
    (binding.principal == principal || binding.principal == "User:*")
        && (binding.host == "*" || binding.host.parse::<IpAddr>().ok() == Some(host))
}

fn names() -> impl Strategy<Value = String> {
    // A small alphabet so names, prefixes and `*` collide often.
    prop_oneof![Just("*".to_owned()), "[ab]{1,4}", "é[ab]{0,2}"]
}

fn bindings() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec![Topic, Group]),
        names(),
        prop::sample::select(PatternType::ALL.to_vec()),
        prop::sample::select(vec!["User:*", "User:a", "User:b", "Group:a"]),
        prop::sample::select(vec!["*", "10.0.0.1", "10.0.0.2"]),
        prop::sample::select(AclOperation::ALL.to_vec()),
        prop::sample::select(AclPermission::ALL.to_vec()),
    )
        .prop_map(
            |(kind, name, pattern, principal, host, operation, permission)| {
                acl(kind, &name, pattern, principal, host, operation, permission)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn authorize_agrees_with_a_scan_of_every_binding(
        acls in prop::collection::vec(bindings(), 0..24),
        removals in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        allow_everyone in any::<bool>(),
        requests in prop::collection::vec((
            prop::sample::select(vec!["User:a", "User:b", "User:c", "Group:a", "User:root"]),
            prop::sample::select(vec![[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]]),
            prop::sample::select(AclOperation::ALL[1..].to_vec()),
            prop::sample::select(vec![Topic, Group]),
            names(),
        ), 1..16),
    ) {
        let super_users = vec!["User:root".to_owned()];
        let mut authorizer = Authorizer::new(AuthorizerConfig {
            super_users: super_users.clone(),
            allow_everyone_if_no_acl_found: allow_everyone,
            ..Default::default()
        }).unwrap();
        let mut model: Vec<AclBinding> = Vec::new();
        for binding in acls {
            let added = authorizer.add(binding.clone()).unwrap();
            prop_assert_eq!(added, !model.contains(&binding));
            if added {
                model.push(binding);
            }
        }
        for index in removals {
            if model.is_empty() {
                break;
            }
            let binding = model.remove(index.index(model.len()));
            prop_assert!(authorizer.remove(&binding));
        }
        prop_assert_eq!(authorizer.len(), model.len());
        for (principal, host, operation, kind, name) in requests {
            let host = IpAddr::from(host);
            let decision = authorizer.authorize(principal, host, operation, kind, &name);
            let request = Request { principal, host, operation, kind, name: &name };
            let expected = naive(&model, &super_users, allow_everyone, &request);
            prop_assert_eq!(decision.outcome, expected, "{} {} {} {:?}", principal, operation, kind, name);
            // The binding named applies to the request and has the decision's permission.
            if let Some(binding) = decision.binding() {
                prop_assert!(model.contains(binding));
                prop_assert!(binding.applies_to(kind, &name));
                prop_assert!(request_matches(binding, principal, host));
                let permission = if decision.is_allowed() { Allow } else { Deny };
                prop_assert_eq!(binding.permission, permission);
            }
        }
    }

    #[test]
    fn list_agrees_with_filtering_every_binding(
        acls in prop::collection::vec(bindings(), 0..24),
        kind in prop::option::of(prop::sample::select(vec![Topic, Group])),
        name in prop::option::of(names()),
        pattern in prop::sample::select(PatternTypeFilter::ALL.to_vec()),
    ) {
        let mut authorizer = Authorizer::new(AuthorizerConfig::default()).unwrap();
        for binding in &acls {
            authorizer.add(binding.clone()).unwrap();
        }
        let filter = AclBindingFilter {
            resource_type: kind,
            resource_name: name,
            pattern_type: pattern,
            ..AclBindingFilter::any()
        };
        let mut expected: Vec<AclBinding> =
            acls.iter().filter(|b| filter.matches(b)).cloned().collect();
        expected.sort();
        expected.dedup();
        let mut listed = authorizer.list(&filter);
        listed.sort();
        prop_assert_eq!(listed, expected);
    }
}

#[test]
fn removing_one_prefix_keeps_others_of_the_same_length() {
    let ab = acl(Topic, "ab", Prefixed, "User:u", "*", Read, Allow);
    let cd = acl(Topic, "cd", Prefixed, "User:u", "*", Read, Allow);
    let mut authorizer = authorizer(&[ab.clone(), cd.clone()]);
    assert!(authorizer.remove(&ab));
    assert!(
        authorizer
            .authorize("User:u", LOCAL, Read, Topic, "cdx")
            .is_allowed()
    );
    assert_eq!(
        authorizer
            .authorize("User:u", LOCAL, Read, Topic, "abx")
            .rule,
        DecisionRule::NoAclForResource
    );
    // Two bindings on one prefix: removing one keeps the prefix.
    let cd_write = acl(Topic, "cd", Prefixed, "User:u", "*", Write, Allow);
    assert!(authorizer.add(cd_write.clone()).unwrap());
    assert!(authorizer.remove(&cd));
    assert!(
        authorizer
            .authorize("User:u", LOCAL, Write, Topic, "cdx")
            .is_allowed()
    );
}

#[test]
fn ledge_resource_types_are_their_own_resources() {
    let authorizer = authorizer(&[
        acl(
            ResourceType::Module,
            "geo",
            Prefixed,
            "User:dev",
            "*",
            Alter,
            Allow,
        ),
        acl(
            ResourceType::Transform,
            "*",
            Literal,
            "User:ops",
            "*",
            Describe,
            Allow,
        ),
        acl(
            Cluster,
            CLUSTER_NAME,
            Literal,
            "User:admin",
            "*",
            Alter,
            Allow,
        ),
    ]);
    assert!(
        authorizer
            .authorize("User:dev", LOCAL, Alter, ResourceType::Module, "geo-v2")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:dev", LOCAL, Alter, Topic, "geo-v2")
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:dev", LOCAL, Alter, ResourceType::Transform, "geo")
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("User:ops", LOCAL, Describe, ResourceType::Transform, "t")
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("User:admin", LOCAL, Alter, Cluster, CLUSTER_NAME)
            .is_allowed()
    );
    assert!(
        authorizer
            .authorize("User:admin", LOCAL, Describe, Cluster, CLUSTER_NAME)
            .is_allowed()
    );
    assert!(
        !authorizer
            .authorize("User:admin", LOCAL, Alter, ResourceType::Module, "m")
            .is_allowed()
    );
}

/// Kafka's `authorizeByResourceType` cases (`BaseAuthorizerTest.testAuthorizeByResourceType*`),
/// as InitProducerId without a transactional id asks them: Write on some topic.
#[test]
fn authorize_on_some_resource_follows_kafkas_by_resource_type() {
    let alice = user("alice");
    let some_write = |authorizer: &Authorizer| {
        authorizer.authorize_on_some_resource(&alice, HOST1, Write, Topic)
    };
    // No ACL: denied (allow_everyone_if_no_acl_found is off).
    assert_eq!(some_write(&authorizer(&[])), Outcome::Denied);
    // With allow_everyone_if_no_acl_found: allowed (the `hardcode` probe).
    let open = authorizer_with(
        AuthorizerConfig {
            allow_everyone_if_no_acl_found: true,
            ..AuthorizerConfig::default()
        },
        &[],
    );
    assert_eq!(some_write(&open), Outcome::Allowed);
    // Super user.
    let su = authorizer_with(
        AuthorizerConfig {
            super_users: vec![alice.clone()],
            ..AuthorizerConfig::default()
        },
        &[],
    );
    assert_eq!(some_write(&su), Outcome::Allowed);
    // One literal allow.
    let one = acl(Topic, "orders", Literal, &alice, "*", Write, Allow);
    assert_eq!(
        some_write(&authorizer(std::slice::from_ref(&one))),
        Outcome::Allowed
    );
    // Another principal's allow, another host's, another operation's: denied. No
    // implication: Read does not count, and neither does Describe.
    let bob = acl(Topic, "orders", Literal, &user("bob"), "*", Write, Allow);
    let other_host = acl(
        Topic,
        "orders",
        Literal,
        &alice,
        "192.168.1.2",
        Write,
        Allow,
    );
    let read = acl(Topic, "orders", Literal, &alice, "*", Read, Allow);
    for binding in [bob, other_host, read] {
        assert_eq!(
            some_write(&authorizer(std::slice::from_ref(&binding))),
            Outcome::Denied,
            "{binding}"
        );
    }
    // `All` and `User:*` count.
    let all = acl(Topic, "orders", Literal, &alice, "*", All, Allow);
    let everyone = acl(
        Topic,
        "orders",
        Literal,
        WILDCARD_PRINCIPAL,
        "*",
        Write,
        Allow,
    );
    assert_eq!(some_write(&authorizer(&[all])), Outcome::Allowed);
    assert_eq!(some_write(&authorizer(&[everyone])), Outcome::Allowed);
    // A deny on the same literal name cancels that allow; a deny on another name does not.
    let deny_orders = acl(Topic, "orders", Literal, &alice, "*", Write, Deny);
    let deny_other = acl(Topic, "payments", Literal, &alice, "*", Write, Deny);
    assert_eq!(
        some_write(&authorizer(&[one.clone(), deny_orders])),
        Outcome::Denied
    );
    assert_eq!(
        some_write(&authorizer(&[one.clone(), deny_other])),
        Outcome::Allowed
    );
    // A denied prefix covering the allowed literal name cancels it.
    let deny_prefix = acl(Topic, "ord", Prefixed, &alice, "*", Write, Deny);
    assert_eq!(
        some_write(&authorizer(&[one.clone(), deny_prefix.clone()])),
        Outcome::Denied
    );
    // An allowed prefix under a shorter denied prefix is cancelled; one beside it is not.
    let allow_prefix = acl(Topic, "orders-", Prefixed, &alice, "*", Write, Allow);
    let allow_other_prefix = acl(Topic, "pay", Prefixed, &alice, "*", Write, Allow);
    assert_eq!(
        some_write(&authorizer(&[allow_prefix, deny_prefix.clone()])),
        Outcome::Denied
    );
    assert_eq!(
        some_write(&authorizer(&[allow_other_prefix, deny_prefix])),
        Outcome::Allowed
    );
    // A deny on the literal `*` denies whatever is allowed; an allow on it allows.
    let deny_all = acl(Topic, WILDCARD, Literal, &alice, "*", Write, Deny);
    assert_eq!(
        some_write(&authorizer(&[one.clone(), deny_all])),
        Outcome::Denied
    );
    let allow_all = acl(Topic, WILDCARD, Literal, &alice, "*", Write, Allow);
    assert_eq!(some_write(&authorizer(&[allow_all])), Outcome::Allowed);
    // Other resource types do not count.
    let group = acl(Group, "orders", Literal, &alice, "*", Write, Allow);
    assert_eq!(some_write(&authorizer(&[group])), Outcome::Denied);
}

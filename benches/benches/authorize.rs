//! What an authorization check costs a request (issue 15: "produce and fetch throughput
//! with mTLS and ACLs on within 5% of the same run without them"). QUIC is always TLS, so a
//! client certificate costs only its verification in the handshake, once per connection;
//! what ACLs add to every request is one `Access` made from the store's snapshot and one
//! check per topic it names. This measures both against an authorizer holding ACLs for
//! many principals and topics (literal and prefixed), to set beside a request's cost
//! (`ledge-bench`: a produce request of one 16 KiB batch takes tens of microseconds of node
//! CPU).
//!
//! `cargo bench -p ledge-benches --bench authorize`

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ledge_node::security::access::Access;
use ledge_node::security::acl::{
    AclBinding, AclOperation, AclPermission, Authorizer, AuthorizerConfig, PatternType,
    ResourceType,
};
use ledge_node::security::identity::{AuthMethod, ClientIdentity};
use ledge_node::security::principal::KafkaPrincipal;

/// Principals with ACLs, and topics per principal: 10,000 bindings in all.
const PRINCIPALS: usize = 100;
const TOPICS_PER_PRINCIPAL: usize = 50;

fn authorizer() -> Arc<Authorizer> {
    let mut authorizer = Authorizer::new(AuthorizerConfig::default()).expect("settings");
    for principal in 0..PRINCIPALS {
        let name = format!("User:app-{principal}");
        for topic in 0..TOPICS_PER_PRINCIPAL {
            let binding = AclBinding::new(
                ResourceType::Topic,
                format!("orders-{principal}-{topic}"),
                PatternType::Literal,
                &name,
                "*",
                AclOperation::Write,
                AclPermission::Allow,
            )
            .expect("binding");
            authorizer.add(binding).expect("room");
        }
        let prefixed = AclBinding::new(
            ResourceType::Topic,
            format!("events-{principal}-"),
            PatternType::Prefixed,
            &name,
            "*",
            AclOperation::All,
            AclPermission::Allow,
        )
        .expect("binding");
        authorizer.add(prefixed).expect("room");
    }
    Arc::new(authorizer)
}

fn identity() -> ClientIdentity {
    ClientIdentity {
        principal: KafkaPrincipal::new("User", "app-42"),
        host: IpAddr::from([10, 0, 0, 7]),
        method: AuthMethod::Certificate,
    }
}

fn checks(c: &mut Criterion) {
    let authorizer = authorizer();
    let identity = identity();
    let mut group = c.benchmark_group("authorize");
    group.bench_function("access_per_request", |b| {
        b.iter(|| black_box(Access::enforced(identity.clone(), Arc::clone(&authorizer))));
    });
    let access = Access::enforced(identity.clone(), Arc::clone(&authorizer));
    group.bench_function("check_literal_allowed", |b| {
        b.iter(|| {
            black_box(access.allows(
                AclOperation::Write,
                ResourceType::Topic,
                black_box("orders-42-17"),
            ))
        });
    });
    group.bench_function("check_prefixed_allowed", |b| {
        b.iter(|| {
            black_box(access.allows(
                AclOperation::Read,
                ResourceType::Topic,
                black_box("events-42-clicks"),
            ))
        });
    });
    group.bench_function("check_unrestricted", |b| {
        let open = Access::unrestricted(identity.clone());
        b.iter(|| {
            black_box(open.allows(
                AclOperation::Write,
                ResourceType::Topic,
                black_box("orders-42-17"),
            ))
        });
    });
    group.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);

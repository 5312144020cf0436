use super::*;
use crate::cluster::init::{InitOptions, init};

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_900_000_000))
}

// Goal: the node id of a certificate is found among the cluster's nodes by the standard name
// check; another cluster's certificate and a certificate for no listed node are refused.
#[test]
fn identify_finds_the_node_a_certificate_names() {
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        nodes: 3,
        dir: dir.path().join("a"),
        base_port: 9100,
        force: false,
    };
    let a = init(&options).unwrap();
    let b = init(&InitOptions {
        dir: dir.path().join("b"),
        ..options
    })
    .unwrap();
    let ca = read_chain("ca", &a.ca_file).unwrap().remove(0);
    let verifier = PeerVerifier::new(ca, &a.cluster_id).unwrap();
    let chain = |report: &crate::cluster::init::InitReport, id: usize| {
        read_chain("cert", &report.nodes[id - 1].cert_file).unwrap()
    };
    assert_eq!(
        verifier.identify(&chain(&a, 2), [1, 2, 3], now()).unwrap(),
        2
    );
    assert_eq!(
        verifier.identify(&chain(&a, 3), [1, 2, 3], now()).unwrap(),
        3
    );
    let error = verifier.identify(&chain(&a, 3), [1, 2], now()).unwrap_err();
    assert!(matches!(error, IdentityError::WrongIdentity(_)), "{error}");
    assert!(
        error.to_string().contains(&node_dns_name(&a.cluster_id, 3)),
        "{error}"
    );
    let error = verifier
        .identify(&chain(&b, 2), [1, 2, 3], now())
        .unwrap_err();
    assert!(matches!(error, IdentityError::Untrusted(_)), "{error}");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    let error = verifier.identify(&[], [1], now()).unwrap_err();
    assert!(matches!(error, IdentityError::Untrusted(_)), "{error}");
}

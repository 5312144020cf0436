use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::security::acl::{AclOperation, AclPermission, PatternType, ResourceType};
use crate::security::records::StoredCredential;

fn open(dir: &Path) -> Result<SecurityStore, SecurityOpenError> {
    open_with(dir, StoreMode::OneNode, false)
}

fn open_with(
    dir: &Path,
    mode: StoreMode,
    read_only: bool,
) -> Result<SecurityStore, SecurityOpenError> {
    SecurityStore::open(
        dir,
        mode,
        read_only,
        AuthorizerConfig::default(),
        SecurityLimits::default(),
        [42; DECOY_SECRET_BYTES],
    )
}

fn upsert(password: &str, iterations: u32) -> UserAlteration {
    let credential =
        ScramCredential::new(ScramMechanism::Sha256, password, b"NaCl", iterations).unwrap();
    UserAlteration::Upsert {
        mechanism: ScramMechanism::Sha256,
        credential: StoredCredential::of(&credential),
    }
}

fn read_acl(topic: &str) -> AclBinding {
    AclBinding::new(
        ResourceType::Topic,
        topic,
        PatternType::Literal,
        "User:alice",
        "*",
        AclOperation::Read,
        AclPermission::Allow,
    )
    .unwrap()
}

#[tokio::test]
async fn users_survive_a_reopen_in_a_0600_file() {
    // Goal: a created user is in security.json (mode 0600) and its credential is the same
    // after the store is opened again; the keys never appear in listings.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let results = store
        .alter_users(vec![("alice".into(), upsert("pw", 8192))])
        .await;
    assert_eq!(results, vec![("alice".to_owned(), Ok(()))]);
    let before = store
        .scram_credential("alice", ScramMechanism::Sha256)
        .unwrap();
    let path = dir.path().join(SECURITY_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, SECURITY_FILE_MODE);
    drop(store);
    let store = open(dir.path()).unwrap();
    let after = store
        .scram_credential("alice", ScramMechanism::Sha256)
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        store.users(),
        vec![UserDescription {
            name: "alice".into(),
            credentials: vec![(ScramMechanism::Sha256, 8192)],
        }]
    );
    assert!(
        store
            .scram_credential("alice", ScramMechanism::Sha512)
            .is_none()
    );
}

#[tokio::test]
async fn an_unknown_users_decoy_salt_is_stable_across_restarts() {
    // Goal: the decoy secret is persisted at first start, so the decoy for a name is the
    // same after a restart, even though a new fresh secret is offered.
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path())
        .unwrap()
        .decoy()
        .credential_for(ScramMechanism::Sha256, "mallory");
    let reopened = SecurityStore::open(
        dir.path(),
        StoreMode::OneNode,
        false,
        AuthorizerConfig::default(),
        SecurityLimits::default(),
        [7; DECOY_SECRET_BYTES],
    )
    .unwrap();
    let second = reopened
        .decoy()
        .credential_for(ScramMechanism::Sha256, "mallory");
    assert_eq!(first.salt(), second.salt());
}

#[tokio::test]
async fn decoys_take_the_iteration_count_real_users_have() {
    // Goal: with every user at 8192 iterations, an unknown name's decoy has 8192 too.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store
            .decoy()
            .credential_for(ScramMechanism::Sha256, "x")
            .iterations(),
        SCRAM_ITERATIONS_MIN
    );
    store
        .alter_users(vec![("alice".into(), upsert("pw", 8192))])
        .await;
    assert_eq!(
        store
            .decoy()
            .credential_for(ScramMechanism::Sha256, "x")
            .iterations(),
        8192
    );
}

#[test]
fn a_group_readable_file_is_refused_with_the_way_out() {
    // Goal: the node refuses to start on a group- or world-readable store, naming the file
    // and the chmod that fixes it.
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).unwrap());
    let path = dir.path().join(SECURITY_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let error = open(dir.path()).unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("chmod 600"), "{error}");
    assert!(error.contains("640"), "{error}");
}

#[tokio::test]
async fn a_damaged_file_names_itself_and_the_way_out_without_secrets() {
    // Goal: truncated JSON, a key of the wrong length and a bad binding are each refused
    // with the file's name and the way out; no key bytes are quoted.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    store
        .alter_users(vec![("alice".into(), upsert("pw", 4096))])
        .await;
    drop(store);
    let path = dir.path().join(SECURITY_FILE);
    let good = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&good).unwrap();
    let key = json["users"]["alice"]["SCRAM-SHA-256"]["stored_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let write = |text: &str| {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(&good[..good.len() / 2]);
    let error = open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("security.json is damaged"), "{error}");
    assert!(error.contains("Restore it from a backup"), "{error}");
    assert!(!error.contains(&key), "{error}");

    let mut short = json.clone();
    short["users"]["alice"]["SCRAM-SHA-256"]["stored_key"] = "AAAA".into();
    write(&short.to_string());
    let error = open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("damaged"), "{error}");
    assert!(error.contains("alice"), "{error}");

    let mut iterations = json.clone();
    iterations["users"]["alice"]["SCRAM-SHA-256"]["iterations"] = key.clone().into();
    write(&iterations.to_string());
    let error = open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("damaged"), "{error}");
    assert!(!error.contains(&key), "{error}");

    let mut newer = json;
    newer["version"] = 99.into();
    write(&newer.to_string());
    let error = open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("format version 99"), "{error}");
}

#[tokio::test]
async fn acls_are_created_listed_and_deleted_durably() {
    // Goal: the authorizer sees new bindings at once, they survive a reopen, and a delete
    // answers per filter what it removed.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    store
        .create_acls(vec![read_acl("orders"), read_acl("payments")])
        .await
        .unwrap();
    let host = "10.0.0.1".parse().unwrap();
    assert!(
        store
            .authorizer()
            .authorize(
                "User:alice",
                host,
                AclOperation::Read,
                ResourceType::Topic,
                "orders"
            )
            .is_allowed()
    );
    drop(store);
    let store = open(dir.path()).unwrap();
    assert_eq!(store.list_acls(&AclBindingFilter::any()).len(), 2);
    let orders = AclBindingFilter::exact(&read_acl("orders"));
    let nothing = AclBindingFilter {
        principal: Some("User:bob".into()),
        ..AclBindingFilter::any()
    };
    let removed = store.delete_acls(&[orders, nothing]).await.unwrap();
    assert_eq!(removed, vec![vec![read_acl("orders")], vec![]]);
    drop(store);
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store.list_acls(&AclBindingFilter::any()),
        vec![read_acl("payments")]
    );
}

#[tokio::test]
async fn refused_users_change_nothing_and_others_still_apply() {
    // Goal: per-user answers; a bad one does not stop a good one in the same request.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let results = store
        .alter_users(vec![
            (String::new(), upsert("pw", 4096)),
            (
                "ghost".into(),
                UserAlteration::Delete {
                    mechanism: ScramMechanism::Sha256,
                },
            ),
            ("bob".into(), upsert("pw", 4096)),
        ])
        .await;
    assert!(matches!(
        &results[0].1,
        Err(SecurityWriteError::Refused {
            refusal: SecurityRefusal::UnacceptableCredential,
            ..
        })
    ));
    assert!(matches!(
        &results[1].1,
        Err(SecurityWriteError::Refused {
            refusal: SecurityRefusal::ResourceNotFound,
            ..
        })
    ));
    assert_eq!(results[2].1, Ok(()));
    assert_eq!(store.users().len(), 1);
}

#[tokio::test]
async fn a_failed_write_changes_nothing() {
    // Goal: when security.json cannot be written, the change is refused and not shown.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let store = open(&data_dir).unwrap();
    std::fs::remove_dir_all(&data_dir).unwrap();
    let results = store
        .alter_users(vec![("alice".into(), upsert("pw", 4096))])
        .await;
    assert_eq!(results[0].1, Err(SecurityWriteError::Persist));
    assert!(store.users().is_empty());
    assert_eq!(
        store.create_acls(vec![read_acl("orders")]).await,
        Err(SecurityWriteError::Persist)
    );
    assert!(store.list_acls(&AclBindingFilter::any()).is_empty());
}

#[tokio::test]
async fn a_read_only_store_serves_but_refuses_changes() {
    // Goal: on a read-only data directory the store opens (no file is created) and every
    // change is refused as read-only.
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), StoreMode::OneNode, true).unwrap();
    assert!(!dir.path().join(SECURITY_FILE).exists());
    assert_eq!(
        store.create_acls(vec![read_acl("orders")]).await,
        Err(SecurityWriteError::ReadOnly)
    );
}

#[tokio::test]
async fn in_a_cluster_the_files_users_are_not_served() {
    // Goal: a data directory that was a one-node node's keeps its file, but in a cluster
    // only the controller's users count: none until the image is followed.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    store
        .alter_users(vec![("alice".into(), upsert("pw", 4096))])
        .await;
    drop(store);
    let store = open_with(dir.path(), StoreMode::Cluster, false).unwrap();
    assert!(
        store
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_none()
    );
    let mut image = MetadataImage::default();
    let records = decide_user_alteration(
        &image.security,
        "carol",
        &upsert("pw", 4096),
        SecurityLimits::default(),
    )
    .unwrap();
    for record in &records {
        image
            .apply(
                1,
                &crate::controller::records::MetadataRecord::Security(record.clone()),
            )
            .unwrap();
    }
    store.refresh_from_image(&image);
    assert!(
        store
            .scram_credential("carol", ScramMechanism::Sha256)
            .is_some()
    );
}

#[tokio::test]
async fn a_stale_wide_temporary_file_does_not_widen_the_store() {
    // Goal: a `security.json.tmp` left with mode 0644 (by another tool) is not reused, so
    // the renamed file keeps mode 0600 and the next start is not refused.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let temporary = dir.path().join("security.json.tmp");
    std::fs::write(&temporary, b"stale").unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).unwrap();
    store
        .alter_users(vec![("alice".into(), upsert("pw", 4096))])
        .await;
    let mode = std::fs::metadata(dir.path().join(SECURITY_FILE))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, SECURITY_FILE_MODE);
    drop(store);
    assert!(open(dir.path()).is_ok());
}

#[tokio::test]
async fn client_quotas_survive_a_reopen_and_validate_only_writes_nothing() {
    // Goal: quotas set through the store are in security.json and read back after a
    // reopen; validate_only and refused changes store nothing; a removal sticks too.
    use crate::security::quota::{QuotaEntity, QuotaKind};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let results = store
        .alter_quotas(
            vec![(
                QuotaEntity::User("alice".into()),
                vec![(QuotaKind::Produce, Some(1_024))],
            )],
            true,
        )
        .await;
    assert!(results[0].1.is_ok());
    assert!(store.quotas().is_empty());
    let results = store
        .alter_quotas(
            vec![
                (
                    QuotaEntity::User("alice".into()),
                    vec![(QuotaKind::Produce, Some(1_024))],
                ),
                (
                    QuotaEntity::DefaultUser,
                    vec![(QuotaKind::Fetch, Some(4_096))],
                ),
                (
                    QuotaEntity::User("bob".into()),
                    vec![(QuotaKind::Produce, Some(0))],
                ),
            ],
            false,
        )
        .await;
    assert!(results[0].1.is_ok() && results[1].1.is_ok());
    assert!(matches!(
        &results[2].1,
        Err(SecurityWriteError::Refused {
            refusal: SecurityRefusal::InvalidRequest,
            ..
        })
    ));
    drop(store);
    let store = open(dir.path()).unwrap();
    assert_eq!(store.quota_for("alice", QuotaKind::Produce), Some(1_024));
    assert_eq!(store.quota_for("alice", QuotaKind::Fetch), Some(4_096));
    assert_eq!(store.quota_for("bob", QuotaKind::Produce), None);
    assert_eq!(store.quotas().len(), 2);
    store
        .alter_quotas(
            vec![(
                QuotaEntity::User("alice".into()),
                vec![(QuotaKind::Produce, None)],
            )],
            false,
        )
        .await;
    drop(store);
    let store = open(dir.path()).unwrap();
    assert_eq!(store.quota_for("alice", QuotaKind::Produce), None);
    assert_eq!(store.quotas().len(), 1);
}

use super::*;
use crate::security::acl::{AclOperation, AclPermission, PatternType, ResourceType};
use crate::security::scram::{SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN, ScramCredential};

fn stored(iterations: u32) -> StoredCredential {
    StoredCredential::of(
        &ScramCredential::new(ScramMechanism::Sha512, "pw", b"salty", iterations).unwrap(),
    )
}

fn upsert(iterations: u32) -> UserAlteration {
    UserAlteration::Upsert {
        mechanism: ScramMechanism::Sha512,
        credential: stored(iterations),
    }
}

fn binding(principal: &str) -> AclBinding {
    AclBinding::new(
        ResourceType::Group,
        "billing",
        PatternType::Prefixed,
        principal,
        "*",
        AclOperation::Read,
        AclPermission::Allow,
    )
    .unwrap()
}

fn apply_all(data: &mut SecurityData, records: &[SecurityRecord]) {
    for record in records {
        data.apply(record).unwrap();
    }
}

#[test]
fn user_names_follow_kafka_and_the_length_limit() {
    // Goal: empty, too long, control characters and non-ASCII are refused, each with its
    // message; a name at the limit is accepted.
    assert_eq!(validate_user_name(""), Err(UserError::EmptyName));
    assert_eq!(validate_user_name(&"a".repeat(USER_NAME_BYTES_MAX)), Ok(()));
    assert_eq!(
        validate_user_name(&"a".repeat(USER_NAME_BYTES_MAX + 1)),
        Err(UserError::NameTooLong {
            bytes: USER_NAME_BYTES_MAX + 1,
            max: USER_NAME_BYTES_MAX
        })
    );
    assert_eq!(validate_user_name("al\nice"), Err(UserError::InvalidName));
    assert_eq!(validate_user_name("alicé"), Err(UserError::InvalidName));
    assert_eq!(validate_user_name("CN=alice, O=x"), Ok(()));
    assert_eq!(
        UserError::EmptyName.to_string(),
        "Username must not be empty"
    );
}

#[test]
fn iterations_are_bounded_both_ways() {
    // Goal: Kafka's bounds 4096..=16384, with Kafka's wording, and no overflow on i32 input.
    assert_eq!(validate_iterations(4096), Ok(SCRAM_ITERATIONS_MIN));
    assert_eq!(validate_iterations(16384), Ok(SCRAM_ITERATIONS_MAX));
    assert!(
        validate_iterations(4095)
            .unwrap_err()
            .to_string()
            .starts_with("Too few iterations")
    );
    assert!(
        validate_iterations(16385)
            .unwrap_err()
            .to_string()
            .starts_with("Too many iterations")
    );
    assert!(validate_iterations(i64::from(i32::MIN)).is_err());
}

#[test]
fn an_upsert_replaces_and_a_delete_of_the_last_mechanism_removes_the_user() {
    // Goal: one credential per user and mechanism; the user disappears with its last one.
    let mut data = SecurityData::default();
    let limits = SecurityLimits::default();
    let records = decide_user_alteration(&data, "bob", &upsert(4096), limits).unwrap();
    apply_all(&mut data, &records);
    let records = decide_user_alteration(&data, "bob", &upsert(8192), limits).unwrap();
    apply_all(&mut data, &records);
    assert_eq!(
        data.describe_user("bob"),
        Some(vec![(ScramMechanism::Sha512, 8192)])
    );
    let delete = UserAlteration::Delete {
        mechanism: ScramMechanism::Sha512,
    };
    let records = decide_user_alteration(&data, "bob", &delete, limits).unwrap();
    apply_all(&mut data, &records);
    assert_eq!(data.describe_user("bob"), None);
    assert_eq!(
        decide_user_alteration(&data, "bob", &delete, limits),
        Err(UserError::NotFound)
    );
    assert_eq!(data.changes, 3);
}

#[test]
fn the_user_limit_refuses_new_users_only() {
    // Goal: at the limit, a new user is refused (POLICY_VIOLATION) but an existing user's
    // credential can still change.
    let limits = SecurityLimits {
        users_max: 1,
        acls_max: 10,
        ..SecurityLimits::default()
    };
    let mut data = SecurityData::default();
    let records = decide_user_alteration(&data, "a", &upsert(4096), limits).unwrap();
    apply_all(&mut data, &records);
    let error = decide_user_alteration(&data, "b", &upsert(4096), limits).unwrap_err();
    assert_eq!(error, UserError::TooManyUsers { users_max: 1 });
    assert_eq!(error.refusal(), SecurityRefusal::LimitExceeded);
    assert!(decide_user_alteration(&data, "a", &upsert(8192), limits).is_ok());
}

#[test]
fn a_credential_with_wrong_key_lengths_is_refused() {
    // Goal: keys of another mechanism's length never get stored.
    let mut credential = stored(4096);
    credential.stored_key.truncate(32);
    let alteration = UserAlteration::Upsert {
        mechanism: ScramMechanism::Sha512,
        credential,
    };
    let error = decide_user_alteration(
        &SecurityData::default(),
        "a",
        &alteration,
        Default::default(),
    )
    .unwrap_err();
    assert_eq!(error.refusal(), SecurityRefusal::UnacceptableCredential);
}

#[test]
fn acl_creation_is_limited_and_idempotent() {
    // Goal: duplicates add nothing; exceeding the limit refuses the whole request.
    let limits = SecurityLimits {
        users_max: 10,
        acls_max: 2,
        ..SecurityLimits::default()
    };
    let mut data = SecurityData::default();
    let records =
        decide_create_acls(&data, &[binding("User:a"), binding("User:a")], limits).unwrap();
    assert_eq!(records.len(), 1);
    apply_all(&mut data, &records);
    assert!(
        decide_create_acls(&data, &[binding("User:a")], limits)
            .unwrap()
            .is_empty()
    );
    let error =
        decide_create_acls(&data, &[binding("User:b"), binding("User:c")], limits).unwrap_err();
    assert_eq!(error, AclError::TooManyAcls { max_acls: 2 });
    assert_eq!(data.acls.len(), 1);
}

#[test]
fn records_that_do_not_fit_are_refused_without_change() {
    // Goal: the image refuses a delete of nothing, a second decoy secret and a bad
    // credential, and `changes` does not move.
    let mut data = SecurityData::default();
    assert!(
        data.apply(&SecurityRecord::DeleteAcl {
            binding: binding("User:a")
        })
        .is_err()
    );
    data.apply(&SecurityRecord::SetDecoySecret {
        secret: DecoySecret([7; 32]),
    })
    .unwrap();
    assert_eq!(
        data.apply(&SecurityRecord::SetDecoySecret {
            secret: DecoySecret([8; 32]),
        }),
        Err(SecurityApplyError::DecoySecretSet)
    );
    let mut bad = stored(4096);
    bad.iterations = 1;
    assert!(
        data.apply(&SecurityRecord::PutScramCredential {
            user: "a".into(),
            mechanism: ScramMechanism::Sha512,
            credential: bad,
        })
        .is_err()
    );
    assert_eq!(data.changes, 1);
}

#[test]
fn debug_output_shows_no_key_or_secret() {
    // Goal: a record printed in a log line carries no key material.
    let credential = stored(4096);
    let key_b64 = BASE64.encode(&credential.stored_key);
    let record = SecurityRecord::PutScramCredential {
        user: "a".into(),
        mechanism: ScramMechanism::Sha512,
        credential,
    };
    let printed = format!("{record:?}");
    assert!(!printed.contains(&key_b64), "{printed}");
    assert!(!printed.contains("stored_key"), "{printed}");
    let secret = format!("{:?}", DecoySecret([9; 32]));
    assert_eq!(secret, "DecoySecret(..)");
}

#[test]
fn data_round_trips_through_json() {
    // Goal: what is written is read back equal (base64 keys, mechanism names).
    let mut data = SecurityData::default();
    let records = decide_user_alteration(&data, "a", &upsert(4096), Default::default()).unwrap();
    apply_all(&mut data, &records);
    let records = decide_create_acls(&data, &[binding("User:a")], Default::default()).unwrap();
    apply_all(&mut data, &records);
    let json = serde_json::to_string(&data).unwrap();
    assert!(json.contains("\"SCRAM-SHA-512\""), "{json}");
    let read: SecurityData = serde_json::from_str(&json).unwrap();
    assert_eq!(read, data);
}

//! User and ACL decisions (issue 15): in a `[cluster]` SCRAM credentials, ACL bindings and
//! the decoy secret are the controller's, recorded as `MetadataRecord::Security`. The rules
//! are the one-node store's (`security/records.rs`), applied to the image, which only the
//! active controller may change. The controller checks against the default limits
//! (`SecurityLimits::default()`): a peer's body cannot grow the image past them.

use super::{ControllerError, ControllerLogic, Work};
use crate::controller::image::MetadataImage;
use crate::controller::records::MetadataRecord;
use crate::security::acl::AclBinding;
use crate::security::quota::{QuotaEntity, QuotaKind};
use crate::security::records::{
    DecoySecret, SecurityLimits, SecurityRecord, UserAlteration, acl_refusal, decide_create_acls,
    decide_decoy_secret, decide_delete_acls, decide_quota_alteration, decide_user_alteration,
};

impl ControllerLogic {
    /// Records one user's credential change, or refuses it as the one-node store would.
    pub fn alter_user(
        &self,
        image: &MetadataImage,
        user: &str,
        alteration: &UserAlteration,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let records =
            decide_user_alteration(&image.security, user, alteration, SecurityLimits::default())
                .map_err(|error| ControllerError::Security {
                    refusal: error.refusal(),
                    message: error.to_string(),
                })?;
        push_all(image, records)
    }

    /// Records new ACL bindings (all or none).
    pub fn create_acls(
        &self,
        image: &MetadataImage,
        bindings: &[AclBinding],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let records = decide_create_acls(&image.security, bindings, SecurityLimits::default())
            .map_err(|error| ControllerError::Security {
                refusal: acl_refusal(&error),
                message: error.to_string(),
            })?;
        push_all(image, records)
    }

    /// Removes the given bindings that are still there.
    pub fn delete_acls(
        &self,
        image: &MetadataImage,
        bindings: &[AclBinding],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        push_all(image, decide_delete_acls(&image.security, bindings))
    }

    /// Records one entity's client quota changes, or refuses them as the one-node store
    /// would.
    pub fn alter_client_quota(
        &self,
        image: &MetadataImage,
        entity: &QuotaEntity,
        changes: &[(QuotaKind, Option<u64>)],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let records =
            decide_quota_alteration(&image.security, entity, changes, SecurityLimits::default())
                .map_err(|error| ControllerError::Security {
                    refusal: error.refusal(),
                    message: error.to_string(),
                })?;
        push_all(image, records)
    }

    /// Sets the cluster's decoy secret unless it has one.
    pub fn set_decoy_secret(
        &self,
        image: &MetadataImage,
        secret: &DecoySecret,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        push_all(image, decide_decoy_secret(&image.security, secret))
    }
}

/// The records as one entry, each checked against the image as it will be.
fn push_all(
    image: &MetadataImage,
    records: Vec<SecurityRecord>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let mut work = Work::new(image);
    for record in records {
        work.push(MetadataRecord::Security(record))?;
    }
    Ok(work.records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::decisions::DecisionConfig;
    use crate::security::acl::{AclOperation, AclPermission, PatternType, ResourceType};
    use crate::security::records::{SecurityRefusal, StoredCredential};
    use crate::security::scram::{ScramCredential, ScramMechanism};

    fn logic() -> ControllerLogic {
        ControllerLogic::new(DecisionConfig::default())
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        let index = image.last_applied_index + 1;
        image.apply_batch(index, records).unwrap();
    }

    fn upsert(iterations: u32) -> UserAlteration {
        let credential =
            ScramCredential::new(ScramMechanism::Sha256, "secret", b"salt", iterations).unwrap();
        UserAlteration::Upsert {
            mechanism: ScramMechanism::Sha256,
            credential: StoredCredential::of(&credential),
        }
    }

    fn binding(topic: &str) -> AclBinding {
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

    #[test]
    fn a_user_is_recorded_in_the_image_and_deleted_again() {
        // Goal: the controller's records put the credential into the image, and a deletion
        // removes the user; deleting again is refused as RESOURCE_NOT_FOUND.
        let logic = logic();
        let mut image = MetadataImage::default();
        let records = logic.alter_user(&image, "alice", &upsert(8192)).unwrap();
        apply(&mut image, &records);
        assert_eq!(
            image.security.describe_user("alice"),
            Some(vec![(ScramMechanism::Sha256, 8192)])
        );
        let delete = UserAlteration::Delete {
            mechanism: ScramMechanism::Sha256,
        };
        let records = logic.alter_user(&image, "alice", &delete).unwrap();
        apply(&mut image, &records);
        assert!(image.security.users.is_empty());
        let Err(ControllerError::Security { refusal, message }) =
            logic.alter_user(&image, "alice", &delete)
        else {
            panic!("a second delete must be refused");
        };
        assert_eq!(refusal, SecurityRefusal::ResourceNotFound);
        assert_eq!(
            message,
            "Attempt to delete a user credential that does not exist"
        );
    }

    #[test]
    fn iterations_out_of_range_are_refused_by_the_controller() {
        // Goal: a peer's body with too few iterations never reaches the log.
        let credential = StoredCredential {
            salt: b"salt".to_vec(),
            stored_key: vec![0; 32],
            server_key: vec![0; 32],
            iterations: 100,
        };
        let alteration = UserAlteration::Upsert {
            mechanism: ScramMechanism::Sha256,
            credential,
        };
        let Err(ControllerError::Security { refusal, .. }) =
            logic().alter_user(&MetadataImage::default(), "alice", &alteration)
        else {
            panic!("too few iterations must be refused");
        };
        assert_eq!(refusal, SecurityRefusal::UnacceptableCredential);
    }

    #[test]
    fn acls_are_created_once_and_deleted_if_present() {
        // Goal: creating a binding twice records it once; deleting a present and an absent
        // binding records only the present one.
        let logic = logic();
        let mut image = MetadataImage::default();
        let records = logic
            .create_acls(&image, &[binding("orders"), binding("orders")])
            .unwrap();
        assert_eq!(records.len(), 1);
        apply(&mut image, &records);
        assert!(
            logic
                .create_acls(&image, &[binding("orders")])
                .unwrap()
                .is_empty()
        );
        let records = logic
            .delete_acls(&image, &[binding("orders"), binding("payments")])
            .unwrap();
        assert_eq!(records.len(), 1);
        apply(&mut image, &records);
        assert!(image.security.acls.is_empty());
    }

    #[test]
    fn the_first_decoy_secret_is_kept() {
        // Goal: two nodes offering their secrets leave the first one recorded.
        let logic = logic();
        let mut image = MetadataImage::default();
        let first = DecoySecret([1; 32]);
        let records = logic.set_decoy_secret(&image, &first).unwrap();
        apply(&mut image, &records);
        assert!(
            logic
                .set_decoy_secret(&image, &DecoySecret([2; 32]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(image.security.decoy_secret, Some(first));
    }

    #[test]
    fn an_image_snapshot_from_before_the_security_store_reads_as_empty() {
        // Goal: `serde(default)` keeps older snapshots readable.
        let image = MetadataImage::default();
        let mut json = serde_json::to_value(&image).unwrap();
        json.as_object_mut().unwrap().remove("security");
        let read: MetadataImage = serde_json::from_value(json).unwrap();
        assert_eq!(read.security, Default::default());
    }
}

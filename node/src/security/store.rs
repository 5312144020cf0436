//! The security store (issue 15): SASL users' SCRAM credentials, ACL bindings and the decoy
//! secret, durable, and readable cheaply by every connection.
//!
//! Readers take a [`SecuritySnapshot`] (an `Arc` behind a lock held only to clone it): the
//! credential lookup of a SCRAM exchange ([`SecurityStore::scram_credential`]), the
//! [`Authorizer`] of every request ([`SecurityStore::authorizer`]) and the decoys of unknown
//! users ([`SecurityStore::decoy`]). A change builds a new snapshot and swaps it in, so a
//! reader never waits for a writer.
//!
//! Where the data lives:
//! - one node: `<data-dir>/security.json` ([`SECURITY_FILE`]), mode 0600, written as
//!   `metadata.json` is (temporary file, fsync, rename, directory fsync). The node refuses to
//!   start when the file is group- or world-readable, and names the file and the way out
//!   when it is damaged. A change is decided (`security/records.rs`), written, then shown.
//! - `[cluster]`: the controller's metadata image (`MetadataImage::security`), changed by
//!   `MetadataRecord::Security` records that admin requests propose through the active
//!   controller ([`SecurityStore::link_cluster`]); each node follows its image
//!   ([`SecurityStore::follow_image`]). `security.json` then holds only this node's decoy
//!   secret, offered to the cluster once ([`SecurityStore::follow_image`]): the first one
//!   recorded is every node's, so an unknown user's decoy salt is the same on every node.
//!
//! Nothing here logs or returns a secret.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use super::acl::{AclBinding, AclBindingFilter, Authorizer, AuthorizerConfig};
use super::quota::{ClientQuotas, QuotaChanges, QuotaEntity, QuotaKind};
use super::records::{
    DecoySecret, QuotaError, SecurityData, SecurityLimits, SecurityRecord, SecurityRefusal,
    UserAlteration, UserError, acl_refusal, decide_create_acls, decide_delete_acls,
    decide_quota_alteration, decide_user_alteration,
};
use super::scram::{
    DECOY_SECRET_BYTES, DecoyCredentials, SCRAM_ITERATIONS_MIN, ScramCredential, ScramMechanism,
};
use crate::controller::admin::{AdminClient, AdminError, AdminRefusal, AdminRequest};
use crate::controller::image::MetadataImage;
use crate::storage::DiskError;
use crate::storage::disk::durable::write_file_durable;

/// The security store's file in the data directory.
pub const SECURITY_FILE: &str = "security.json";
/// Permission bits `security.json` is written with: it holds credentials.
pub const SECURITY_FILE_MODE: u32 = 0o600;
/// Version of `security.json`'s format.
const SECURITY_FILE_FORMAT_VERSION: u32 = 1;

/// `security.json`: a version and the data.
#[derive(Serialize, Deserialize)]
struct SecurityFile {
    version: u32,
    #[serde(flatten)]
    data: SecurityData,
}

/// Which mode the node runs in: where the users and ACLs are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `security.json` holds everything.
    OneNode,
    /// The metadata image holds users and ACLs; `security.json` holds this node's decoy
    /// secret until the cluster has one.
    Cluster,
}

/// Why the store could not be opened. Each message names the file and the way out.
#[derive(Debug, thiserror::Error)]
pub enum SecurityOpenError {
    /// The file can be read by others than the node's user.
    #[error(
        "{path} is readable by its group or by others (mode {mode:03o}) and holds credentials; run `chmod 600 {path}` and check who could read it"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not JSON of the expected shape, or contents that break an invariant.
    #[error(
        "{path} is damaged: {reason}. Restore it from a backup; or move it away to start with no users and no ACLs (create them again; unknown users' decoy salts change)"
    )]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong (never a secret).
        reason: String,
    },
    /// Written by a newer Ledge.
    #[error("{path} has format version {found}; this build reads version {supported}")]
    Version {
        /// The file.
        path: String,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Why a change was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecurityWriteError {
    /// Refused; nothing changed.
    #[error("{message}")]
    Refused {
        /// The kind, for the wire code.
        refusal: SecurityRefusal,
        /// Why, in one line.
        message: String,
    },
    /// The data directory is read-only.
    #[error("the security store cannot change: the data directory is read-only")]
    ReadOnly,
    /// `security.json` could not be written (the node's log names the file and the cause);
    /// nothing changed.
    #[error("the security store could not be written; nothing changed (the node's log says why)")]
    Persist,
    /// The controller did not record the change (no quorum, a timeout, a failure).
    #[error("{0}")]
    Controller(String),
}

impl SecurityWriteError {
    fn refused(refusal: SecurityRefusal, message: impl Into<String>) -> Self {
        Self::Refused {
            refusal,
            message: message.into(),
        }
    }
}

impl From<UserError> for SecurityWriteError {
    fn from(error: UserError) -> Self {
        Self::refused(error.refusal(), error.to_string())
    }
}

impl From<QuotaError> for SecurityWriteError {
    fn from(error: QuotaError) -> Self {
        Self::refused(error.refusal(), error.to_string())
    }
}

impl From<AdminError> for SecurityWriteError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Refused {
                refusal: AdminRefusal::Security(refusal),
                message,
            } => Self::Refused { refusal, message },
            other => Self::Controller(other.to_string()),
        }
    }
}

/// One user as listings show it: name and each mechanism's iteration count (never a key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDescription {
    /// The user name.
    pub name: String,
    /// Mechanisms with their iterations, in Kafka's type order.
    pub credentials: Vec<(ScramMechanism, u32)>,
}

/// An immutable view of the store, shared by every reader until the next change.
pub struct SecuritySnapshot {
    data: SecurityData,
    credentials: HashMap<(String, ScramMechanism), ScramCredential>,
    authorizer: Arc<Authorizer>,
    decoy: Arc<DecoyCredentials>,
}

impl SecuritySnapshot {
    /// Builds the view of `data`: checks every credential and binding (an error names the
    /// first that breaks an invariant). The decoy secret is `data`'s, else `local_decoy`.
    fn build(
        data: SecurityData,
        authorizer_config: &AuthorizerConfig,
        local_decoy: &DecoySecret,
    ) -> Result<Self, String> {
        let mut credentials = HashMap::new();
        let mut iteration_counts: BTreeMap<u32, usize> = BTreeMap::new();
        for (user, by_mechanism) in &data.users {
            super::records::validate_user_name(user)
                .map_err(|error| format!("user {user:?}: {error}"))?;
            for (mechanism, stored) in by_mechanism {
                let credential = stored
                    .credential(*mechanism)
                    .map_err(|error| format!("user {user:?}: {error}"))?;
                *iteration_counts.entry(credential.iterations()).or_default() += 1;
                credentials.insert((user.clone(), *mechanism), credential);
            }
        }
        let mut config = authorizer_config.clone();
        // Bindings already stored load even if the limit was lowered since; new ones are
        // refused by the decisions.
        config.max_acls = config.max_acls.max(data.acls.len());
        let mut authorizer = Authorizer::new(config).map_err(|error| error.to_string())?;
        for binding in &data.acls {
            authorizer
                .add(binding.clone())
                .map_err(|error| format!("ACL {binding}: {error}"))?;
        }
        // Decoys use the iteration count most real credentials use, so the count in a
        // server-first-message does not tell an unknown name from a known one.
        let decoy_iterations = iteration_counts
            .iter()
            .max_by_key(|(iterations, count)| (**count, std::cmp::Reverse(**iterations)))
            .map_or(SCRAM_ITERATIONS_MIN, |(iterations, _)| *iterations);
        let secret = data.decoy_secret.as_ref().unwrap_or(local_decoy);
        let decoy =
            DecoyCredentials::new(secret.0, decoy_iterations).map_err(|error| error.to_string())?;
        Ok(Self {
            data,
            credentials,
            authorizer: Arc::new(authorizer),
            decoy: Arc::new(decoy),
        })
    }

    /// The data this view shows.
    pub fn data(&self) -> &SecurityData {
        &self.data
    }
}

/// The cluster side of the store: the controller client and this node's image.
struct ClusterLink {
    admin: Arc<AdminClient>,
    image: tokio::sync::watch::Receiver<Arc<MetadataImage>>,
}

/// The node's users, ACLs and decoy secret (see the module documentation).
pub struct SecurityStore {
    snapshot: RwLock<Arc<SecuritySnapshot>>,
    authorizer_config: AuthorizerConfig,
    limits: SecurityLimits,
    /// This node's own decoy secret (from `security.json`).
    local_decoy: DecoySecret,
    mode: StoreMode,
    /// `security.json`.
    path: PathBuf,
    read_only: bool,
    /// Orders the changes of this node (decide, write, swap).
    change: tokio::sync::Mutex<()>,
    cluster: OnceLock<ClusterLink>,
}

impl std::fmt::Debug for SecurityStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecurityStore")
            .field("mode", &self.mode)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Held only to clone an `Arc`; poisoning means a panic already reported.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SecurityStore {
    /// Opens `<data_dir>/security.json`, creating it (with `fresh_secret`, random bytes from
    /// a secure source, as the decoy secret) when missing, unless `read_only` (then the decoy
    /// secret lives in memory). Blocking file IO: call at start.
    pub fn open(
        data_dir: &Path,
        mode: StoreMode,
        read_only: bool,
        authorizer_config: AuthorizerConfig,
        limits: SecurityLimits,
        fresh_secret: [u8; DECOY_SECRET_BYTES],
    ) -> Result<Self, SecurityOpenError> {
        let path = data_dir.join(SECURITY_FILE);
        let shown = path.display().to_string();
        let loaded = match std::fs::metadata(&path) {
            Ok(metadata) => {
                let bits = metadata.permissions().mode() & 0o777;
                if bits & 0o077 != 0 {
                    return Err(SecurityOpenError::Permissions {
                        path: shown,
                        mode: bits,
                    });
                }
                let bytes =
                    std::fs::read(&path).map_err(|cause| DiskError::new("read", &path, cause))?;
                Some(parse_file(&bytes, &shown)?)
            }
            Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => None,
            Err(cause) => return Err(DiskError::new("stat", &path, cause).into()),
        };
        let mut data = match loaded {
            Some(data) => data,
            None => {
                let data = SecurityData {
                    decoy_secret: Some(DecoySecret(fresh_secret)),
                    ..SecurityData::default()
                };
                if !read_only {
                    write_secure(&path, &encode_file(&data))?;
                }
                data
            }
        };
        let local_decoy = match data.decoy_secret.clone() {
            Some(secret) => secret,
            None => {
                // A file without one (written by hand): use the fresh one, kept from now on.
                data.decoy_secret = Some(DecoySecret(fresh_secret));
                if !read_only {
                    write_secure(&path, &encode_file(&data))?;
                }
                DecoySecret(fresh_secret)
            }
        };
        let shown_data = match mode {
            StoreMode::OneNode => data,
            StoreMode::Cluster => {
                if !data.users.is_empty() || !data.acls.is_empty() {
                    tracing::warn!(
                        file = %shown,
                        users = data.users.len(),
                        acls = data.acls.len(),
                        "in a [cluster] users and ACLs are the controller's; the ones in this file are not used (create them again with `ledge user create` / `ledge acl add`)"
                    );
                }
                // Until the image is followed: nobody, no ACL.
                SecurityData::default()
            }
        };
        let snapshot = SecuritySnapshot::build(shown_data, &authorizer_config, &local_decoy)
            .map_err(|reason| SecurityOpenError::Damaged {
                path: shown.clone(),
                reason,
            })?;
        Ok(Self {
            snapshot: RwLock::new(Arc::new(snapshot)),
            authorizer_config,
            limits,
            local_decoy,
            mode,
            path,
            read_only,
            change: tokio::sync::Mutex::new(()),
            cluster: OnceLock::new(),
        })
    }

    /// The current view.
    pub fn snapshot(&self) -> Arc<SecuritySnapshot> {
        Arc::clone(&read(&self.snapshot))
    }

    /// `user`'s credential for `mechanism`, or `None` for a user without one (the caller
    /// then uses [`SecurityStore::decoy`]).
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        read(&self.snapshot)
            .credentials
            .get(&(user.to_owned(), mechanism))
            .cloned()
    }

    /// The decoy credentials for unknown users.
    pub fn decoy(&self) -> Arc<DecoyCredentials> {
        Arc::clone(&read(&self.snapshot).decoy)
    }

    /// The ACLs and Kafka's rules over them, as of now.
    pub fn authorizer(&self) -> Arc<Authorizer> {
        Arc::clone(&read(&self.snapshot).authorizer)
    }

    /// Where the store is kept.
    pub fn mode(&self) -> StoreMode {
        self.mode
    }

    /// The limits new users and ACLs are checked against.
    pub fn limits(&self) -> SecurityLimits {
        self.limits
    }

    /// Every user with its mechanisms and iterations, by name.
    pub fn users(&self) -> Vec<UserDescription> {
        let snapshot = self.snapshot();
        snapshot
            .data
            .users
            .keys()
            .filter_map(|name| self.describe_in(&snapshot, name))
            .collect()
    }

    /// One user, or `None` when it has no credential.
    pub fn user(&self, name: &str) -> Option<UserDescription> {
        self.describe_in(&self.snapshot(), name)
    }

    fn describe_in(&self, snapshot: &SecuritySnapshot, name: &str) -> Option<UserDescription> {
        snapshot
            .data
            .describe_user(name)
            .map(|credentials| UserDescription {
                name: name.to_owned(),
                credentials,
            })
    }

    /// The bindings `filter` matches, in the authorizer's order.
    pub fn list_acls(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        self.authorizer().list(filter)
    }

    /// Applies each user's alteration (at most one per user: the caller refuses duplicates
    /// first). Each user's answer is its own: a refused user changes nothing, the others
    /// still apply. On one node every accepted change is written in one file write.
    pub async fn alter_users(
        &self,
        alterations: Vec<(String, UserAlteration)>,
    ) -> Vec<(String, Result<(), SecurityWriteError>)> {
        if let Some(link) = self.cluster.get() {
            let mut results = Vec::with_capacity(alterations.len());
            for (user, alteration) in alterations {
                let result = link
                    .admin
                    .submit(AdminRequest::AlterUser {
                        user: user.clone(),
                        alteration,
                    })
                    .await
                    .map_err(SecurityWriteError::from);
                self.refresh_from_image(&link.image.borrow().clone());
                results.push((user, result));
            }
            return results;
        }
        let _change = self.change.lock().await;
        let mut data = self.snapshot().data.clone();
        let mut results = Vec::with_capacity(alterations.len());
        let mut accepted = Vec::new();
        for (user, alteration) in alterations {
            let decided = decide_user_alteration(&data, &user, &alteration, self.limits)
                .map_err(SecurityWriteError::from)
                .and_then(|records| self.apply_all(&mut data, &records));
            match decided {
                Ok(()) => {
                    accepted.push(results.len());
                    results.push((user, Ok(())));
                }
                Err(error) => results.push((user, Err(error))),
            }
        }
        if !accepted.is_empty()
            && let Err(error) = self.commit(data).await
        {
            for index in accepted {
                results[index].1 = Err(error.clone());
            }
        }
        results
    }

    /// Every client quota, as of now.
    pub fn quotas(&self) -> ClientQuotas {
        self.snapshot().data.quotas.clone()
    }

    /// The quota of `kind` for the user `name` (its own, else the default user's; `None`:
    /// unlimited). Cheap: every produce and fetch of a tracked principal asks.
    pub fn quota_for(&self, name: &str, kind: QuotaKind) -> Option<u64> {
        read(&self.snapshot).data.quotas.quota_for(name, kind)
    }

    /// Applies each entity's quota changes (a key set to a value, or removed with `None`),
    /// in order (an entity named twice gets both, the later last). Each entity's answer is
    /// its own, as Kafka's AlterClientQuotas; on one node every accepted change is
    /// written in one file write. With `validate_only` nothing is stored.
    pub async fn alter_quotas(
        &self,
        alterations: Vec<(QuotaEntity, QuotaChanges)>,
        validate_only: bool,
    ) -> Vec<(QuotaEntity, Result<(), SecurityWriteError>)> {
        if let Some(link) = self.cluster.get() {
            let mut results = Vec::with_capacity(alterations.len());
            for (entity, changes) in alterations {
                let result = if validate_only {
                    decide_quota_alteration(
                        &self.snapshot().data,
                        &entity,
                        &changes,
                        SecurityLimits::default(),
                    )
                    .map(|_| ())
                    .map_err(SecurityWriteError::from)
                } else {
                    let result = link
                        .admin
                        .submit(AdminRequest::AlterClientQuota {
                            entity: entity.clone(),
                            changes,
                        })
                        .await
                        .map_err(SecurityWriteError::from);
                    self.refresh_from_image(&link.image.borrow().clone());
                    result
                };
                results.push((entity, result));
            }
            return results;
        }
        let _change = self.change.lock().await;
        let mut data = self.snapshot().data.clone();
        let mut results = Vec::with_capacity(alterations.len());
        let mut accepted = Vec::new();
        for (entity, changes) in alterations {
            let decided = decide_quota_alteration(&data, &entity, &changes, self.limits)
                .map_err(SecurityWriteError::from)
                .and_then(|records| self.apply_all(&mut data, &records).map(|()| records));
            match decided {
                Ok(records) => {
                    if !records.is_empty() {
                        accepted.push(results.len());
                    }
                    results.push((entity, Ok(())));
                }
                Err(error) => results.push((entity, Err(error))),
            }
        }
        if !accepted.is_empty()
            && !validate_only
            && let Err(error) = self.commit(data).await
        {
            for index in accepted {
                results[index].1 = Err(error.clone());
            }
        }
        results
    }

    /// Adds `bindings` (validated by the caller; those already there change nothing), all
    /// or none.
    pub async fn create_acls(&self, bindings: Vec<AclBinding>) -> Result<(), SecurityWriteError> {
        if let Some(link) = self.cluster.get() {
            let result = link
                .admin
                .submit(AdminRequest::CreateAcls { bindings })
                .await
                .map_err(SecurityWriteError::from);
            self.refresh_from_image(&link.image.borrow().clone());
            return result;
        }
        let _change = self.change.lock().await;
        let mut data = self.snapshot().data.clone();
        let records = decide_create_acls(&data, &bindings, self.limits)
            .map_err(|error| SecurityWriteError::refused(acl_refusal(&error), error.to_string()))?;
        if records.is_empty() {
            return Ok(());
        }
        self.apply_all(&mut data, &records)?;
        self.commit(data).await
    }

    /// Removes the bindings each filter matches; answers them per filter (a binding two
    /// filters match is named under both, as Kafka answers DeleteAcls).
    pub async fn delete_acls(
        &self,
        filters: &[AclBindingFilter],
    ) -> Result<Vec<Vec<AclBinding>>, SecurityWriteError> {
        let matched = |snapshot: &SecuritySnapshot| -> Vec<Vec<AclBinding>> {
            filters
                .iter()
                .map(|filter| snapshot.authorizer.list(filter))
                .collect()
        };
        if let Some(link) = self.cluster.get() {
            let per_filter = matched(&self.snapshot());
            let bindings: Vec<AclBinding> = per_filter.iter().flatten().cloned().collect();
            if !bindings.is_empty() {
                let result = link
                    .admin
                    .submit(AdminRequest::DeleteAcls { bindings })
                    .await
                    .map_err(SecurityWriteError::from);
                self.refresh_from_image(&link.image.borrow().clone());
                result?;
            }
            return Ok(per_filter);
        }
        let _change = self.change.lock().await;
        let snapshot = self.snapshot();
        let per_filter = matched(&snapshot);
        let bindings: Vec<AclBinding> = per_filter.iter().flatten().cloned().collect();
        let mut data = snapshot.data.clone();
        let records = decide_delete_acls(&data, &bindings);
        if !records.is_empty() {
            self.apply_all(&mut data, &records)?;
            self.commit(data).await?;
        }
        Ok(per_filter)
    }

    fn apply_all(
        &self,
        data: &mut SecurityData,
        records: &[SecurityRecord],
    ) -> Result<(), SecurityWriteError> {
        for record in records {
            data.apply(record).map_err(|error| {
                SecurityWriteError::refused(SecurityRefusal::InvalidRequest, error.to_string())
            })?;
        }
        Ok(())
    }

    /// Writes `data` to `security.json`, then shows it.
    async fn commit(&self, data: SecurityData) -> Result<(), SecurityWriteError> {
        if self.read_only {
            return Err(SecurityWriteError::ReadOnly);
        }
        let snapshot = SecuritySnapshot::build(data, &self.authorizer_config, &self.local_decoy)
            .map_err(|reason| {
                SecurityWriteError::refused(SecurityRefusal::InvalidRequest, reason)
            })?;
        let bytes = encode_file(&snapshot.data);
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || write_secure(&path, &bytes)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "security store not written; the change is refused");
                return Err(SecurityWriteError::Persist);
            }
            Err(error) => {
                tracing::error!(%error, "security store write task failed; the change is refused");
                return Err(SecurityWriteError::Persist);
            }
        }
        *write(&self.snapshot) = Arc::new(snapshot);
        Ok(())
    }

    /// Links the store to the cluster: changes go through `admin` (the active controller)
    /// and the view follows `image` (call [`SecurityStore::follow_image`]). A store linked
    /// twice keeps the first link.
    pub fn link_cluster(
        &self,
        admin: Arc<AdminClient>,
        image: tokio::sync::watch::Receiver<Arc<MetadataImage>>,
    ) {
        let _ = self.cluster.set(ClusterLink { admin, image });
    }

    /// Follows the linked cluster's image until it closes: shows every change of its
    /// security data, and offers this node's decoy secret once the image has none (the
    /// first recorded is kept). Returns at once when not linked.
    pub async fn follow_image(self: Arc<Self>) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        let mut image = link.image.clone();
        let mut offered = false;
        loop {
            let current = image.borrow_and_update().clone();
            self.refresh_from_image(&current);
            if !offered && current.last_applied_index > 0 && current.security.decoy_secret.is_none()
            {
                offered = true;
                let store = Arc::clone(&self);
                tokio::spawn(async move {
                    let Some(link) = store.cluster.get() else {
                        return;
                    };
                    let request = AdminRequest::SetDecoySecret {
                        secret: store.local_decoy.clone(),
                    };
                    if let Err(error) = link.admin.submit(request).await {
                        tracing::warn!(%error, "could not record the cluster's decoy secret; this node uses its own until one is recorded");
                    }
                });
            }
            if image.changed().await.is_err() {
                return;
            }
        }
    }

    /// Shows `image`'s security data if it changed since the current view.
    fn refresh_from_image(&self, image: &MetadataImage) {
        // `changes` only grows: equal counts are equal data.
        if self.snapshot().data.changes == image.security.changes {
            return;
        }
        match SecuritySnapshot::build(
            image.security.clone(),
            &self.authorizer_config,
            &self.local_decoy,
        ) {
            Ok(snapshot) => {
                let mut slot = write(&self.snapshot);
                // A concurrent refresh may have shown a later image already.
                if snapshot.data.changes >= slot.data.changes {
                    *slot = Arc::new(snapshot);
                }
            }
            Err(reason) => {
                tracing::error!(%reason, "the metadata image's security data cannot be used; keeping the previous view");
            }
        }
    }
}

/// Writes `security.json` durably with mode 0600. A temporary file left by someone else
/// (with wider permissions) is removed first: opening it would keep its mode, and the
/// rename would then give `security.json` that mode.
fn write_secure(path: &Path, bytes: &[u8]) -> Result<(), DiskError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => {}
        Err(cause) => return Err(DiskError::new("remove", &temporary, cause)),
    }
    write_file_durable(path, bytes, SECURITY_FILE_MODE)
}

fn encode_file(data: &SecurityData) -> Vec<u8> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        version: u32,
        #[serde(flatten)]
        data: &'a SecurityData,
    }
    // Serializing plain maps, strings and numbers cannot fail.
    serde_json::to_vec_pretty(&Borrowed {
        version: SECURITY_FILE_FORMAT_VERSION,
        data,
    })
    .unwrap_or_default()
}

fn parse_file(bytes: &[u8], shown: &str) -> Result<SecurityData, SecurityOpenError> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    // The position and kind only: serde's own text can quote the file's values.
    let damaged = |error: serde_json::Error| SecurityOpenError::Damaged {
        path: shown.to_owned(),
        reason: format!(
            "not JSON of the expected shape ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        ),
    };
    let version: Version = serde_json::from_slice(bytes).map_err(damaged)?;
    if version.version != SECURITY_FILE_FORMAT_VERSION {
        return Err(SecurityOpenError::Version {
            path: shown.to_owned(),
            found: version.version,
            supported: SECURITY_FILE_FORMAT_VERSION,
        });
    }
    let file: SecurityFile = serde_json::from_slice(bytes).map_err(damaged)?;
    Ok(file.data)
}

#[cfg(test)]
mod tests;

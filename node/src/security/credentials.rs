//! Where a listener finds SCRAM credentials: the one question authentication asks the
//! security store. The Kafka listener's SASL exchange (`kafka/sasl.rs`) takes a
//! [`CredentialLookup`]; the durable store of users implements it.

use std::sync::Arc;

use crate::security::scram::{DecoyCredentials, ScramCredential, ScramMechanism};

/// The credentials SASL authentication checks against.
pub trait CredentialLookup: Send + Sync {
    /// The stored credential of `user` for `mechanism`, if the user has one.
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;

    /// The stand-ins for names without a credential, so an exchange for an unknown user looks
    /// like one for a known user with a wrong password (see [`DecoyCredentials`]).
    fn decoys(&self) -> Arc<DecoyCredentials>;
}

impl CredentialLookup for crate::security::store::SecurityStore {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        Self::scram_credential(self, user, mechanism)
    }

    fn decoys(&self) -> Arc<DecoyCredentials> {
        self.decoy()
    }
}

/// Credentials held in a map: a test fixture (real credentials made from real passwords, so
/// every exchange against it runs for real).
#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::HashMap;

    use super::*;

    /// Users and their credentials, by name and mechanism.
    pub(crate) struct MapCredentials {
        credentials: HashMap<(String, ScramMechanism), ScramCredential>,
        decoys: Arc<DecoyCredentials>,
    }

    /// Iterations of the fixture's credentials and decoys: Kafka's minimum, the cheapest.
    pub(crate) const FIXTURE_ITERATIONS: u32 = crate::security::scram::SCRAM_ITERATIONS_MIN;

    impl MapCredentials {
        /// No users yet; decoys from a fixed secret.
        pub(crate) fn new() -> Self {
            Self {
                credentials: HashMap::new(),
                decoys: Arc::new(
                    DecoyCredentials::new(
                        [3; crate::security::scram::DECOY_SECRET_BYTES],
                        FIXTURE_ITERATIONS,
                    )
                    .expect("fixture iterations are in range"),
                ),
            }
        }

        /// Adds `user` with `password` for `mechanism`: a salt of
        /// [`SCRAM_SALT_BYTES`](crate::security::scram::SCRAM_SALT_BYTES), as the node makes
        /// them and as decoys have (fixed per user and mechanism).
        pub(crate) fn with_user(
            mut self,
            user: &str,
            password: &str,
            mechanism: ScramMechanism,
        ) -> Self {
            let seed = ring::digest::digest(
                &ring::digest::SHA256,
                format!("{user}\0{}", mechanism.name()).as_bytes(),
            );
            let salt = &seed.as_ref()[..crate::security::scram::SCRAM_SALT_BYTES];
            let credential = ScramCredential::new(mechanism, password, salt, FIXTURE_ITERATIONS)
                .expect("fixture credential");
            self.credentials
                .insert((user.to_owned(), mechanism), credential);
            self
        }
    }

    impl CredentialLookup for MapCredentials {
        fn scram_credential(
            &self,
            user: &str,
            mechanism: ScramMechanism,
        ) -> Option<ScramCredential> {
            self.credentials.get(&(user.to_owned(), mechanism)).cloned()
        }

        fn decoys(&self) -> Arc<DecoyCredentials> {
            Arc::clone(&self.decoys)
        }
    }
}

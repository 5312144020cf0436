//! The native API's client quota requests (issue 15): AlterClientQuotas (47) and
//! DescribeClientQuotas (48), answered from the security store with the rules of the Kafka
//! APIs (`kafka/handlers/quotas.rs`): user entities only, the two byte-rate keys, whole
//! values of at least 1, each entity answered alone. Authorization is the native dispatch's
//! (AlterConfigs / DescribeConfigs on the cluster, as Kafka's).

use ledge_protocol::wire::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ClientQuotaEntry, ClientQuotaResult,
    ClientQuotaValue, DescribeClientQuotasRequest, DescribeClientQuotasResponse, ErrorCode,
};

use super::Broker;
use super::dispatch::security_write_code;
use crate::security::quota::{QuotaEntity, QuotaKind};
use crate::storage::Disk;

/// The message when the node has no security store (tests, the simulator).
const NO_STORE: &str = "this node has no security store";

fn entity_of(user: &Option<String>) -> QuotaEntity {
    match user {
        Some(name) => QuotaEntity::User(name.clone()),
        None => QuotaEntity::DefaultUser,
    }
}

fn user_of(entity: &QuotaEntity) -> Option<String> {
    match entity {
        QuotaEntity::User(name) => Some(name.clone()),
        QuotaEntity::DefaultUser => None,
    }
}

impl<D: Disk> Broker<D> {
    /// AlterClientQuotas: each entry's changes (known keys, each once), applied alone.
    pub(crate) async fn alter_client_quotas_request(
        &self,
        request: AlterClientQuotasRequest,
    ) -> AlterClientQuotasResponse {
        let mut results: Vec<ClientQuotaResult> = request
            .entries
            .iter()
            .map(|entry| ClientQuotaResult {
                user: entry.user.clone(),
                error: ErrorCode::None,
                message: String::new(),
            })
            .collect();
        let mut valid = Vec::new();
        for (index, entry) in request.entries.iter().enumerate() {
            let mut changes: Vec<(QuotaKind, Option<u64>)> = Vec::new();
            let mut refused = None;
            for op in &entry.ops {
                match QuotaKind::from_key(&op.key) {
                    None => {
                        refused = Some(format!(
                            "unknown quota key {:?}: Ledge supports producer_byte_rate and consumer_byte_rate",
                            op.key
                        ));
                    }
                    Some(kind) if changes.iter().any(|(seen, _)| *seen == kind) => {
                        refused = Some(format!("quota key {} given twice", op.key));
                    }
                    Some(kind) => changes.push((kind, (!op.remove).then_some(op.value))),
                }
            }
            match refused {
                Some(message) => {
                    results[index].error = ErrorCode::InvalidRequest;
                    results[index].message = message;
                }
                None => valid.push((index, entity_of(&entry.user), changes)),
            }
        }
        if valid.is_empty() {
            return AlterClientQuotasResponse { results };
        }
        let Some(store) = self.security_store() else {
            for (index, _, _) in &valid {
                results[*index].error = ErrorCode::InvalidRequest;
                results[*index].message = NO_STORE.to_owned();
            }
            return AlterClientQuotasResponse { results };
        };
        let alterations = valid
            .iter()
            .map(|(_, entity, changes)| (entity.clone(), changes.clone()))
            .collect();
        let outcomes = store.alter_quotas(alterations, request.validate_only).await;
        for ((index, _, _), (_, outcome)) in valid.iter().zip(outcomes) {
            if let Err(error) = outcome {
                results[*index].error = security_write_code(&error);
                results[*index].message = error.to_string();
            }
        }
        AlterClientQuotasResponse { results }
    }

    /// DescribeClientQuotas: every entity with a quota, or the named users'.
    pub(crate) fn describe_client_quotas_request(
        &self,
        request: &DescribeClientQuotasRequest,
    ) -> DescribeClientQuotasResponse {
        let Some(store) = self.security_store() else {
            return DescribeClientQuotasResponse {
                error: ErrorCode::InvalidRequest,
                message: NO_STORE.to_owned(),
                entries: Vec::new(),
            };
        };
        let entries = store
            .quotas()
            .entities()
            .into_iter()
            .filter(|(entity, _)| {
                request.users.is_empty()
                    || matches!(entity, QuotaEntity::User(name) if request.users.contains(name))
            })
            .map(|(entity, values)| ClientQuotaEntry {
                user: user_of(&entity),
                values: values
                    .entries()
                    .into_iter()
                    .map(|(kind, value)| ClientQuotaValue {
                        key: kind.key().to_owned(),
                        value,
                    })
                    .collect(),
            })
            .collect();
        DescribeClientQuotasResponse {
            error: ErrorCode::None,
            message: String::new(),
            entries,
        }
    }
}

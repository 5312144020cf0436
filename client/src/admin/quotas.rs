//! Client quotas (issue 15): `ledge quota ...` through the native API (AlterClientQuotas 47,
//! DescribeClientQuotas 48). Produce and fetch bytes per second per user, or for the default
//! user (every user without its own), as Kafka's `kafka-configs --entity-type users`.

use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};

use super::{Admin, request_with_retry, unexpected};
use crate::cluster::failover::RequestKind;
use crate::error::AdminError;

/// Kafka's produce quota key.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Kafka's fetch quota key.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";

/// One entity's quotas, bytes per second (`None`: not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientQuota {
    /// The user; `None`: the default user.
    pub user: Option<String>,
    /// `producer_byte_rate`.
    pub producer_byte_rate: Option<u64>,
    /// `consumer_byte_rate`.
    pub consumer_byte_rate: Option<u64>,
}

fn refused(user: Option<&str>, code: ErrorCode, message: String) -> AdminError {
    AdminError::Security {
        subject: match user {
            Some(user) => format!("quota of user {user}"),
            None => "quota of the default user".to_owned(),
        },
        code,
        message,
    }
}

impl Admin {
    /// Sets (`Some`) or removes (`None` in `remove`) quota keys of `user` (`None`: the
    /// default user). `set` pairs a key with bytes per second.
    pub async fn alter_quota(
        &self,
        user: Option<&str>,
        set: &[(&str, u64)],
        remove: &[&str],
    ) -> Result<(), AdminError> {
        let ops = set
            .iter()
            .map(|(key, value)| wire::ClientQuotaOp {
                key: (*key).to_owned(),
                value: *value,
                remove: false,
            })
            .chain(remove.iter().map(|key| wire::ClientQuotaOp {
                key: (*key).to_owned(),
                value: 0,
                remove: true,
            }))
            .collect();
        let request = Request::AlterClientQuotas(wire::AlterClientQuotasRequest {
            entries: vec![wire::ClientQuotaAlteration {
                user: user.map(str::to_owned),
                ops,
            }],
            validate_only: false,
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::AlterClientQuotas(response) => response,
            other => return Err(unexpected(ApiKey::AlterClientQuotas, &other).into()),
        };
        for result in response.results {
            if result.error != ErrorCode::None {
                return Err(refused(user, result.error, result.message));
            }
        }
        Ok(())
    }

    /// Every entity with a quota: the default user first, then users by name.
    pub async fn list_quotas(&self) -> Result<Vec<ClientQuota>, AdminError> {
        let request =
            Request::DescribeClientQuotas(wire::DescribeClientQuotasRequest { users: Vec::new() });
        let response = match request_with_retry(&self.client, &request).await? {
            Response::DescribeClientQuotas(response) => response,
            other => return Err(unexpected(ApiKey::DescribeClientQuotas, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(refused(None, response.error, response.message));
        }
        Ok(response
            .entries
            .into_iter()
            .map(|entry| {
                let value = |key: &str| {
                    entry
                        .values
                        .iter()
                        .find(|value| value.key == key)
                        .map(|value| value.value)
                };
                ClientQuota {
                    producer_byte_rate: value(PRODUCER_BYTE_RATE),
                    consumer_byte_rate: value(CONSUMER_BYTE_RATE),
                    user: entry.user,
                }
            })
            .collect())
    }
}

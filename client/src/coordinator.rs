//! Group requests go to the group's coordinator (issue 13): the node that leads the group's
//! `__consumer_offsets` partition, named by FindCoordinator.
//!
//! [`Client::group_request`] finds the coordinator (asking the default node), caches its
//! address per group, and forgets it and finds it again when the answer says
//! `NotCoordinator` or `CoordinatorNotAvailable` or the connection to it is lost, retrying
//! within the request timeout (as partition routing does with `NotLeaderOrFollower`,
//! `cluster.rs`). A node without `[cluster]` names itself; a node older than FindCoordinator
//! refuses the API and the request goes to the default node as before.

use std::net::SocketAddr;
use std::time::Duration;

use ledge_protocol::wire::{ApiKey, ErrorCode, FindCoordinatorRequest, Request, Response};

use crate::clock;
use crate::connection::{Client, resolve, unexpected};
use crate::error::RequestError;

/// First pause before asking again after a refusal that names no coordinator yet (it grows
/// to [`GROUP_RETRY_BACKOFF_MAX`]).
const GROUP_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between two tries of a group request.
const GROUP_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The group-level error of a group response: what says "ask another coordinator".
/// DescribeGroups and DeleteGroups answer per group; a request for one group is judged by
/// that group's error.
fn group_error(response: &Response) -> ErrorCode {
    match response {
        Response::ConsumerGroupHeartbeat(response) => response.error,
        Response::OffsetCommit(response) => response.error,
        Response::OffsetFetch(response) => response.error,
        Response::DescribeGroups(response) if response.groups.len() == 1 => response
            .groups
            .first()
            .map_or(ErrorCode::None, |group| group.error),
        Response::DeleteGroups(response) if response.groups.len() == 1 => response
            .groups
            .first()
            .map_or(ErrorCode::None, |group| group.error),
        _ => ErrorCode::None,
    }
}

/// Whether `code` means the request went to the wrong node or too early: find the
/// coordinator again and retry.
pub(crate) fn is_coordinator_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
    )
}

impl Client {
    /// Sends `request`, about group `group_id`, to the group's coordinator; see the module
    /// docs. Returns the last answer when the request timeout runs out.
    pub(crate) async fn group_request(
        &self,
        group_id: &str,
        request: &Request,
    ) -> Result<Response, RequestError> {
        let deadline = clock::now() + self.config().request_timeout;
        let mut backoff = GROUP_RETRY_BACKOFF_MIN;
        loop {
            let answer = match self.coordinator(group_id).await {
                Ok(node) => {
                    let answer = self.request_to(node, request, Duration::ZERO).await;
                    let stale = match &answer {
                        Ok(response) => is_coordinator_error(group_error(response)),
                        Err(
                            RequestError::Connect(_)
                            | RequestError::ConnectionLost(_)
                            | RequestError::TimedOut(_),
                        ) => true,
                        Err(_) => false,
                    };
                    if stale {
                        self.forget_coordinator(group_id, node);
                    }
                    answer
                }
                Err(error) => Err(error),
            };
            let retry = match &answer {
                Ok(response) => is_coordinator_error(group_error(response)),
                Err(error) => error.is_retriable(),
            };
            if !retry || clock::now() + backoff >= deadline {
                return answer;
            }
            tracing::debug!(
                group_id,
                "group request to a stale coordinator; finding it again"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(GROUP_RETRY_BACKOFF_MAX);
        }
    }

    /// The address of `group_id`'s coordinator: cached, else asked of the default node.
    async fn coordinator(&self, group_id: &str) -> Result<SocketAddr, RequestError> {
        if let Some(node) = self.cached_coordinator(group_id) {
            return Ok(node);
        }
        let request = Request::FindCoordinator(FindCoordinatorRequest {
            group_id: group_id.to_string(),
        });
        let response = match self.request(&request, Duration::ZERO).await {
            Ok(Response::FindCoordinator(response)) => response,
            Ok(other) => return Err(unexpected(ApiKey::FindCoordinator, &other)),
            // A node from before FindCoordinator coordinates every group itself.
            Err(RequestError::Refused {
                code: ErrorCode::UnknownApiKey,
                ..
            }) => return Ok(self.server_addr()),
            Err(error) => return Err(error),
        };
        if response.error != ErrorCode::None {
            return Err(RequestError::Refused {
                code: response.error,
                message: response.message,
            });
        }
        // Nodes list their addresses as `ip:port`: parsed without a lookup.
        let node = match response.address.parse::<SocketAddr>() {
            Ok(node) => node,
            Err(_) => resolve(&response.address).await?,
        };
        self.cache_coordinator(group_id, node);
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use ledge_protocol::wire::{
        ConsumerGroupHeartbeatResponse, DescribeGroupsResponse, DescribedGroup,
        OffsetCommitResponse,
    };

    use super::*;

    // Goal: the answers that mean "wrong or not yet a coordinator" are recognized in every
    // group response, and only those send the client to FindCoordinator again.
    #[test]
    fn coordinator_errors_are_found_in_each_group_response() {
        let heartbeat = Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
            error: ErrorCode::NotCoordinator,
            ..ConsumerGroupHeartbeatResponse::default()
        });
        assert!(is_coordinator_error(group_error(&heartbeat)));
        let commit = Response::OffsetCommit(OffsetCommitResponse {
            error: ErrorCode::CoordinatorNotAvailable,
            ..OffsetCommitResponse::default()
        });
        assert!(is_coordinator_error(group_error(&commit)));
        let described = Response::DescribeGroups(DescribeGroupsResponse {
            groups: vec![DescribedGroup {
                error: ErrorCode::NotCoordinator,
                ..DescribedGroup::default()
            }],
        });
        assert!(is_coordinator_error(group_error(&described)));
        let fenced = Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
            error: ErrorCode::FencedMemberEpoch,
            ..ConsumerGroupHeartbeatResponse::default()
        });
        assert!(!is_coordinator_error(group_error(&fenced)));
        assert!(!is_coordinator_error(ErrorCode::NotLeaderOrFollower));
    }
}

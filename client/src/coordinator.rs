//! Group requests go to the group's coordinator (issue 13): the node that leads the group's
//! `__consumer_offsets` partition, named by FindCoordinator.
//!
//! [`Client::group_request`] finds the coordinator (asking the default node), caches its
//! address per group, and forgets it and finds it again when the answer says
//! `NotCoordinator` or `CoordinatorNotAvailable`, or when no answer comes: the connection
//! failed or broke, the request timed out, or the cluster stopped listing the node as alive
//! while the request waited (`Client::request_to_live`: a coordinator that was kill -9ed or
//! stopped is left as soon as the controller fences it, not after QUIC's idle timeout). It
//! retries with a doubling backoff within the request timeout, under the rules of
//! `cluster/failover.rs` (a commit is resent only when no answer came or the node did
//! nothing; it carries the same offsets and member epoch, so it stores the same thing or is
//! refused). A node without `[cluster]` names itself; a node older than FindCoordinator
//! refuses the API and the request goes to the default node as before.

use std::net::SocketAddr;
use std::time::Duration;

use ledge_protocol::wire::{ApiKey, ErrorCode, FindCoordinatorRequest, Request, Response};

use crate::clock;
use crate::cluster::failover::{Attempt, Decision, RequestKind, Retries};
use crate::connection::{Client, resolve, unexpected};
use crate::error::RequestError;

/// What a group request does, for which answers are worth a resend (`cluster/failover.rs`):
/// an offset commit and a group deletion change something; heartbeats (the coordinator
/// answers a repeated one from the member's state and epoch), offset fetches and group
/// descriptions do not.
fn group_request_kind(request: &Request) -> RequestKind {
    match request {
        Request::OffsetCommit(_) | Request::DeleteGroups(_) => RequestKind::Write,
        _ => RequestKind::Read,
    }
}

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

impl Client {
    /// Sends `request`, about group `group_id`, to the group's coordinator; see the module
    /// docs. Returns the last answer when the request timeout runs out.
    pub(crate) async fn group_request(
        &self,
        group_id: &str,
        request: &Request,
    ) -> Result<Response, RequestError> {
        let mut retries = Retries::new(
            group_request_kind(request),
            clock::now(),
            self.config().request_timeout,
        );
        loop {
            let (answer, node) = match self.coordinator(group_id).await {
                Ok(node) => (
                    self.request_to_live(node, request, Duration::ZERO).await,
                    Some(node),
                ),
                Err(error) => (Err(error), None),
            };
            let attempt = match &answer {
                Ok(response) => Attempt::answered(group_error(response)),
                Err(RequestError::Refused { code, .. }) => Attempt::answered(*code),
                Err(error) if error.is_no_answer() => Attempt::NoAnswer,
                Err(_) => Attempt::Final,
            };
            let lost = matches!(attempt, Attempt::NoAnswer | Attempt::NotTheNode { .. });
            if lost && let Some(node) = node {
                self.forget_coordinator(group_id, node);
                if attempt == Attempt::NoAnswer {
                    // FindCoordinator goes to the default node: not to this one again.
                    self.next_default_node(node);
                }
            }
            match retries.handle_attempt(attempt, clock::now()) {
                Decision::GiveUp => return answer,
                Decision::RetryAfter { wait, .. } => {
                    tracing::debug!(
                        group_id,
                        ?attempt,
                        tries = retries.tries(),
                        "group request not answered by a coordinator; sending it again"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
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
        OffsetCommitRequest, OffsetCommitResponse,
    };

    use super::*;

    /// Whether `code` sends the group request to FindCoordinator again.
    fn is_coordinator_error(code: ErrorCode) -> bool {
        matches!(Attempt::answered(code), Attempt::NotTheNode { .. })
    }

    // Goal: commits and deletions are writes (resent only when nothing was done), the rest
    // of the group requests reads.
    #[test]
    fn commits_and_deletions_are_writes() {
        let commit = Request::OffsetCommit(OffsetCommitRequest::default());
        assert_eq!(group_request_kind(&commit), RequestKind::Write);
        let fetch = Request::OffsetFetch(ledge_protocol::wire::OffsetFetchRequest::default());
        assert_eq!(group_request_kind(&fetch), RequestKind::Read);
    }

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

//! When a request that is not about one partition (admin calls, FindCoordinator, group
//! requests) is sent again, and where: the decisions of the failover loop in
//! `connection.rs` and `coordinator.rs`, pure (no IO, time passed in) so they are tested
//! without a cluster.
//!
//! Rules (the Java AdminClient's and consumer's, librdkafka's):
//! - A try ends in one of four ways ([`Attempt`]): an answer that is final (success, or a
//!   refusal retrying will not change), no answer from the node (the connection failed or
//!   broke, the request timed out, or the cluster no longer lists the node as alive), an
//!   answer that says "not the node to ask" (`NotCoordinator`, `CoordinatorNotAvailable`,
//!   `NotController`), or another retriable refusal (`TooManyRequests`, `ShuttingDown`, ...).
//! - A final answer is returned as is: a refusal is never resent blindly.
//! - No answer, or "not the node to ask": the node is left for the next candidate
//!   ([`Decision::RetryAfter::move_on`]), and the request is sent again there. This holds for
//!   requests that change something too (CreateTopics, DeleteTopics, AlterConfigs, module
//!   and transform changes, reassignments, offset commits): the cluster routes writes to the
//!   controller or the coordinator whichever node receives them, and a write whose answer was
//!   lost may have been carried out, so its resend may find its own effect (a CreateTopics
//!   answered `TopicAlreadyExists`). The Java AdminClient reports the same; an offset commit
//!   sent again carries the same offsets and member epoch, so it stores the same thing or is
//!   refused.
//! - Another retriable refusal is sent again to the same node for requests that change
//!   nothing; a write is sent again only when the code says nothing was done
//!   ([`not_carried_out`]), since `RequestTimedOut` from the node may come after the
//!   controller committed it.
//! - Every resend waits a backoff that doubles from [`RETRY_BACKOFF_MIN`] to
//!   [`RETRY_BACKOFF_MAX`] (Kafka's `retry.backoff.ms` and `retry.backoff.max.ms`), and none
//!   starts after the budget (the client's request timeout, counted from the first try) would
//!   be over: then the last outcome is returned.

use std::time::{Duration, Instant};

use ledge_protocol::wire::ErrorCode;

/// The first wait before a resend.
pub(crate) const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two tries of one request.
pub(crate) const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a request does, which decides which refusals are worth a resend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// Changes nothing (Metadata, Describe*, List*, OffsetFetch, heartbeats, which the
    /// coordinator answers from the member's state): sent again after any retriable failure.
    Read,
    /// Changes something: sent again only when no answer came, or the node said it did
    /// nothing.
    Write,
}

/// How one try of a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// An answer to hand to the caller: a success, or a refusal a resend would not change.
    Final,
    /// The node said it is not the one to ask, or not yet (`code`).
    NotTheNode {
        /// The node's code.
        code: ErrorCode,
    },
    /// No answer: no connection, a connection lost, no answer in time, or the cluster no
    /// longer lists the node as alive.
    NoAnswer,
    /// Another retriable refusal (`code`).
    Refused {
        /// The node's code.
        code: ErrorCode,
    },
}

impl Attempt {
    /// How a try answered with `code` (`ErrorCode::None` for success) ended.
    pub(crate) fn answered(code: ErrorCode) -> Self {
        match code {
            ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NotController => Self::NotTheNode { code },
            code if code.is_retriable() => Self::Refused { code },
            _ => Self::Final,
        }
    }
}

/// What to do after a try that did not end the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Return the last outcome to the caller.
    GiveUp,
    /// Send again after `wait`; `move_on`: to another node (the caller marks this one
    /// unreachable or forgets it as the coordinator), else to the same one.
    RetryAfter {
        /// The pause before the next try.
        wait: Duration,
        /// Whether the next try goes to another node.
        move_on: bool,
    },
}

/// One request's tries: its budget and backoff. See the module docs for the rules.
#[derive(Clone, Debug)]
pub(crate) struct Retries {
    kind: RequestKind,
    deadline: Instant,
    backoff: Duration,
    tries: u32,
}

impl Retries {
    /// The tries of a `kind` request first sent at `now`, all started within `budget`.
    pub(crate) fn new(kind: RequestKind, now: Instant, budget: Duration) -> Self {
        Self {
            kind,
            deadline: now + budget,
            backoff: RETRY_BACKOFF_MIN,
            tries: 0,
        }
    }

    /// Takes in how a try ended at `now`, and says what comes next.
    pub(crate) fn handle_attempt(&mut self, attempt: Attempt, now: Instant) -> Decision {
        self.tries = self.tries.saturating_add(1);
        let (retry, move_on) = match attempt {
            Attempt::Final => (false, false),
            Attempt::NoAnswer | Attempt::NotTheNode { .. } => (true, true),
            Attempt::Refused { code } => match self.kind {
                RequestKind::Read => (true, false),
                RequestKind::Write => (not_carried_out(code), false),
            },
        };
        if !retry {
            return Decision::GiveUp;
        }
        let wait = self.backoff;
        if now + wait >= self.deadline {
            return Decision::GiveUp;
        }
        self.backoff = (self.backoff * 2).min(RETRY_BACKOFF_MAX);
        Decision::RetryAfter { wait, move_on }
    }

    /// How many tries ended so far.
    pub(crate) fn tries(&self) -> u32 {
        self.tries
    }
}

/// Whether a node that refused a write with `code` did nothing of it, so a resend cannot
/// apply it twice: refused before it was looked at (too many in flight, shutting down), or
/// sent to a node that is not the one to do it.
pub(crate) fn not_carried_out(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::TooManyRequests
            | ErrorCode::ShuttingDown
            | ErrorCode::NotController
            | ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Instant {
        crate::clock::now()
    }

    // Goal: a node that does not answer is left for another one, for reads and writes alike,
    // with a backoff that doubles to its maximum, and no try starts after the budget.
    #[test]
    fn no_answer_moves_on_with_a_doubling_backoff_until_the_budget_is_spent() {
        for kind in [RequestKind::Read, RequestKind::Write] {
            let t0 = start();
            let mut retries = Retries::new(kind, t0, Duration::from_secs(3));
            let mut now = t0;
            let mut waits = Vec::new();
            while let Decision::RetryAfter { wait, move_on } =
                retries.handle_attempt(Attempt::NoAnswer, now)
            {
                assert!(move_on, "{kind:?}: a silent node is left");
                waits.push(wait.as_millis());
                now += wait;
            }
            assert_eq!(waits, [50, 100, 200, 400, 800, 1000], "{kind:?}");
            assert!(now < t0 + Duration::from_secs(3));
            assert_eq!(retries.tries(), 7);
        }
    }

    // Goal: a refusal is resent only when a resend can change it; a write only when the node
    // did nothing; "not the node to ask" moves on.
    #[test]
    fn refusals_are_resent_only_when_retriable_and_writes_only_when_not_carried_out() {
        let t0 = start();
        let budget = Duration::from_secs(30);
        let decide =
            |kind, code| Retries::new(kind, t0, budget).handle_attempt(Attempt::answered(code), t0);
        let same = Decision::RetryAfter {
            wait: RETRY_BACKOFF_MIN,
            move_on: false,
        };
        let other = Decision::RetryAfter {
            wait: RETRY_BACKOFF_MIN,
            move_on: true,
        };
        for kind in [RequestKind::Read, RequestKind::Write] {
            assert_eq!(decide(kind, ErrorCode::None), Decision::GiveUp);
            assert_eq!(
                decide(kind, ErrorCode::TopicAlreadyExists),
                Decision::GiveUp
            );
            assert_eq!(decide(kind, ErrorCode::InvalidConfig), Decision::GiveUp);
            assert_eq!(decide(kind, ErrorCode::FencedMemberEpoch), Decision::GiveUp);
            assert_eq!(decide(kind, ErrorCode::NotCoordinator), other);
            assert_eq!(decide(kind, ErrorCode::CoordinatorNotAvailable), other);
            assert_eq!(decide(kind, ErrorCode::NotController), other);
            assert_eq!(decide(kind, ErrorCode::TooManyRequests), same);
            assert_eq!(decide(kind, ErrorCode::ShuttingDown), same);
        }
        // The controller may have committed a write the node then timed out on.
        assert_eq!(decide(RequestKind::Read, ErrorCode::RequestTimedOut), same);
        assert_eq!(
            decide(RequestKind::Write, ErrorCode::RequestTimedOut),
            Decision::GiveUp
        );
        assert_eq!(
            decide(RequestKind::Write, ErrorCode::StorageError),
            Decision::GiveUp
        );
    }

    // Goal: the failures that mean "no answer from the node" are the ones that move a
    // request on, and a closed client is not one of them (it sends nothing anywhere).
    #[test]
    fn no_answer_is_a_silent_node_and_never_a_closed_client() {
        use crate::error::{ConnectError, RequestError};
        let silent = [
            RequestError::NodeLost { node: "n".into() },
            RequestError::ConnectionLost("reset".into()),
            RequestError::TimedOut(Duration::from_secs(1)),
            RequestError::Connect(ConnectError::TimedOut {
                server: "n".into(),
                timeout: Duration::from_secs(1),
            }),
        ];
        for error in silent {
            assert!(error.is_no_answer(), "{error}");
            assert!(error.is_retriable(), "{error}");
        }
        assert!(!RequestError::Connect(ConnectError::Closed).is_no_answer());
        let refused = RequestError::Refused {
            code: ErrorCode::NotCoordinator,
            message: String::new(),
        };
        assert!(!refused.is_no_answer(), "an answer, judged by its code");
    }

    // Goal: a budget too short for even the first backoff gives up at once, whatever failed.
    #[test]
    fn an_empty_budget_gives_up_at_once() {
        let t0 = start();
        let mut retries = Retries::new(RequestKind::Read, t0, Duration::from_millis(10));
        assert_eq!(
            retries.handle_attempt(Attempt::NoAnswer, t0),
            Decision::GiveUp
        );
    }
}

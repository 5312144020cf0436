//! 3 and 5 controllers in one process over an in-memory router, on paused tokio time and
//! `SimDisk`s.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use super::*;
use crate::clock::{Clock, SimClock, SystemClock, sleep};
use crate::controller::records::{PartitionState, TopicId};
use crate::sim::SimDisk;

#[derive(Default)]
struct Router {
    nodes: Mutex<BTreeMap<NodeId, Arc<Controller>>>,
    /// Isolated nodes: nothing reaches them or leaves them.
    isolated: Mutex<BTreeSet<NodeId>>,
    /// Cut links, both ways (the lower id first).
    cut_links: Mutex<BTreeSet<(NodeId, NodeId)>>,
}

impl Router {
    fn isolate(&self, node: NodeId) {
        self.isolated.lock().unwrap().insert(node);
    }

    fn cut_link(&self, a: NodeId, b: NodeId) {
        self.cut_links.lock().unwrap().insert((a.min(b), a.max(b)));
    }

    fn heal(&self) {
        self.isolated.lock().unwrap().clear();
        self.cut_links.lock().unwrap().clear();
    }

    fn cut(&self, from: NodeId, to: NodeId) -> bool {
        let isolated = self.isolated.lock().unwrap();
        isolated.contains(&from)
            || isolated.contains(&to)
            || self
                .cut_links
                .lock()
                .unwrap()
                .contains(&(from.min(to), from.max(to)))
    }
}

struct Link {
    from: NodeId,
    router: Arc<Router>,
}

impl ControllerTransport for Link {
    async fn send(
        &self,
        target: NodeId,
        message: RaftMessage,
    ) -> Result<RaftReply, TransportError> {
        let dropped = |reason: &str| TransportError {
            target,
            reason: reason.to_owned(),
        };
        if self.router.cut(self.from, target) {
            return Err(dropped("partitioned"));
        }
        let controller = self.router.nodes.lock().unwrap().get(&target).cloned();
        let controller = controller.ok_or_else(|| dropped("not running"))?;
        let reply = controller
            .handle_raft_message(SimClock::new(0).now(), message)
            .await
            .map_err(|refused| dropped(&refused.to_string()))?;
        // A partition that started during the call drops the answer.
        if self.router.cut(self.from, target) {
            return Err(dropped("partitioned"));
        }
        Ok(reply)
    }
}

struct Quorum {
    router: Arc<Router>,
    disks: BTreeMap<NodeId, SimDisk>,
    voters: BTreeMap<NodeId, String>,
    snapshot_entries: u64,
}

fn data_dir(node: NodeId) -> PathBuf {
    PathBuf::from(format!("/data/node-{node}"))
}

impl Quorum {
    async fn start(voters: u32, snapshot_entries: u64) -> Self {
        let mut quorum = Self {
            router: Arc::new(Router::default()),
            disks: BTreeMap::new(),
            voters: (1..=voters)
                .map(|id| (id, format!("127.0.0.1:{}", 9100 + id)))
                .collect(),
            snapshot_entries,
        };
        for id in 1..=voters {
            let disk = SimDisk::new(u64::from(id));
            // As `cluster-init` does: each voter's first start may initialize the quorum.
            crate::controller::bootstrap::write_marker(&disk, &data_dir(id), "test")
                .await
                .unwrap();
            quorum.disks.insert(id, disk);
            quorum.boot(id).await;
        }
        quorum
    }

    async fn boot(&mut self, id: NodeId) {
        let mut config = ControllerConfig::new(id, self.voters.clone());
        config.snapshot_entries = self.snapshot_entries;
        let link = Arc::new(Link {
            from: id,
            router: self.router.clone(),
        });
        let controller = Controller::start(config, self.disks[&id].clone(), &data_dir(id), link)
            .await
            .unwrap();
        self.router
            .nodes
            .lock()
            .unwrap()
            .insert(id, Arc::new(controller));
    }

    fn node(&self, id: NodeId) -> Arc<Controller> {
        self.router.nodes.lock().unwrap()[&id].clone()
    }

    /// Waits (bounded, in paused time) until `condition` holds.
    async fn until(&self, what: &str, mut condition: impl FnMut(&Self) -> bool) {
        for _ in 0..3_000 {
            if condition(self) {
                return;
            }
            sleep(&SimClock::new(0), Duration::from_millis(10)).await;
        }
        panic!("not reached within 30 s of simulated time: {what}");
    }

    /// The leader every node in `among` agrees on.
    async fn leader(&self, among: &[NodeId]) -> NodeId {
        let mut found = None;
        self.until("one leader agreed", |quorum| {
            let leaders: BTreeSet<Option<NodeId>> =
                among.iter().map(|id| quorum.node(*id).leader()).collect();
            found = match leaders.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(leader)] if among.contains(leader) => Some(*leader),
                _ => None,
            };
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// Registers and heartbeats every voter as a node, through the controller `leader`.
    async fn register_all(&self, leader: NodeId) {
        let controller = self.node(leader);
        let now = SystemClock.now();
        for id in self.voters.keys() {
            let request = RegisterRequest {
                node_id: *id,
                address: self.voters[id].clone(),
                incarnation_id: u64::from(*id),
                storage_id: None,
                kafka_listeners: None,
            };
            let epoch = controller.register(now, request).await.unwrap();
            controller.heartbeat(now, *id, epoch).await.unwrap();
        }
    }
}

fn topic_request(name: &str, byte: u8, replication_factor: u16) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.to_owned(),
        topic_id: TopicId([byte; 16]),
        partitions: 3,
        replication_factor: Some(replication_factor),
        configs: BTreeMap::new(),
    }
}

fn create_record(name: &str, byte: u8) -> Vec<MetadataRecord> {
    vec![MetadataRecord::CreateTopic {
        name: name.to_owned(),
        topic_id: TopicId([byte; 16]),
        configs: BTreeMap::new(),
        partitions: vec![PartitionState {
            replicas: vec![1],
            isr: vec![1],
            elr: Vec::new(),
            leader: Some(1),
            leader_epoch: 0,
            partition_epoch: 0,
        }],
    }]
}

#[tokio::test(start_paused = true)]
async fn three_voters_elect_commit_and_survive_the_leaders_loss() {
    let quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let leader = quorum.leader(&[1, 2, 3]).await;
    quorum.register_all(leader).await;
    quorum
        .node(leader)
        .create_topic(topic_request("orders", 1, 3))
        .await
        .unwrap();
    quorum
        .until("every voter applied the topic", |quorum| {
            (1..=3).all(|id| quorum.node(id).image().topics.contains_key("orders"))
        })
        .await;
    // A follower is not the controller and says who is.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let error = quorum
        .node(follower)
        .create_topic(topic_request("other", 2, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ControllerRequestError::NotController { leader: Some(l) } if l == leader),
        "{error:?}"
    );
    assert_eq!(error.code(), "NOT_CONTROLLER");

    // The leader dies.
    quorum.router.isolate(leader);
    quorum.node(leader).shutdown().await;
    let rest: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    let next = quorum.leader(&rest).await;
    assert_ne!(next, leader);
    assert!(quorum.node(next).image().topics.contains_key("orders"));
    quorum
        .node(next)
        .create_topic(topic_request("payments", 3, 2))
        .await
        .unwrap();
    quorum
        .until("the survivors applied the new topic", |quorum| {
            rest.iter()
                .all(|id| quorum.node(*id).image().topics.contains_key("payments"))
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn five_voters_commit_with_two_lost() {
    let quorum = Quorum::start(5, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let leader = quorum.leader(&[1, 2, 3, 4, 5]).await;
    let lost: Vec<NodeId> = (1..=5).filter(|id| *id != leader).take(2).collect();
    for id in &lost {
        quorum.router.isolate(*id);
    }
    let response = quorum
        .node(leader)
        .propose(create_record("orders", 1))
        .await
        .unwrap();
    assert_eq!(response.result, Ok(()));
    let live: Vec<NodeId> = (1..=5).filter(|id| !lost.contains(id)).collect();
    quorum
        .until("the majority applied it", |quorum| {
            live.iter()
                .all(|id| quorum.node(*id).image().topics.contains_key("orders"))
        })
        .await;
    quorum.router.heal();
    quorum
        .until("the two lost voters caught up", |quorum| {
            lost.iter()
                .all(|id| quorum.node(*id).image().topics.contains_key("orders"))
        })
        .await;
}

/// A leader cut off with one voter of three cannot commit: its write never applies anywhere,
/// and once the partition heals it fails, while the majority's write stands.
#[tokio::test(start_paused = true)]
async fn a_minority_partition_cannot_commit() {
    let quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let old = quorum.leader(&[1, 2, 3]).await;
    quorum.router.isolate(old);
    let cut_off = quorum.node(old);
    let write = tokio::spawn(async move { cut_off.propose(create_record("lost", 1)).await });
    let majority: Vec<NodeId> = (1..=3).filter(|id| *id != old).collect();
    let next = quorum.leader(&majority).await;
    quorum
        .node(next)
        .propose(create_record("kept", 2))
        .await
        .unwrap();
    quorum.router.heal();
    quorum
        .until("the old leader follows the new one", |quorum| {
            quorum.node(old).leader() == Some(next)
                && quorum.node(old).image().topics.contains_key("kept")
        })
        .await;
    let outcome = write.await.unwrap();
    assert!(
        outcome.is_err(),
        "the minority's write must fail: {outcome:?}"
    );
    for id in 1..=3 {
        assert!(
            !quorum.node(id).image().topics.contains_key("lost"),
            "node {id}"
        );
    }
}

/// Snapshots bound the log; a voter that missed more than the log keeps catches up from the
/// leader's snapshot.
#[tokio::test(start_paused = true)]
async fn snapshots_bound_the_log_and_a_lagging_voter_catches_up_by_snapshot() {
    let snapshot_entries = 5;
    let quorum = Quorum::start(3, snapshot_entries).await;
    let leader = quorum.leader(&[1, 2, 3]).await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    quorum.router.isolate(lagging);
    let lagging_last = quorum.node(lagging).metrics().borrow().last_log_index;
    for index in 0..40u8 {
        quorum
            .node(leader)
            .propose(create_record(&format!("t{index}"), index))
            .await
            .unwrap();
    }
    // openraft purges once no replication request still uses the entries: the lagging
    // voter's pending request fails at its next retry (its backoff is 500 ms).
    quorum
        .until("the leader purged the log below its snapshot", |quorum| {
            quorum.node(leader).metrics().borrow().purged.is_some()
        })
        .await;
    let metrics = quorum.node(leader).metrics().borrow().clone();
    let purged = metrics.purged.map(|id| id.index).unwrap_or(0);
    let last = metrics.last_log_index.unwrap_or(0);
    assert!(metrics.snapshot.is_some());
    assert!(
        last - purged <= 3 * snapshot_entries,
        "the log holds {} entries (last {last}, purged {purged})",
        last - purged
    );
    assert!(
        purged > lagging_last.unwrap_or(0),
        "the leader purged past what the lagging voter has, so only a snapshot can catch it up"
    );
    quorum.router.heal();
    quorum
        .until("the lagging voter has every topic", |quorum| {
            quorum.node(lagging).image().topics.len() == 40
        })
        .await;
    assert_eq!(
        quorum.node(lagging).image().topics,
        quorum.node(leader).image().topics
    );
}

/// Every voter loses power at once; the committed metadata is there after the restart.
#[tokio::test(start_paused = true)]
async fn a_coordinated_power_loss_keeps_committed_metadata() {
    let mut quorum = Quorum::start(3, 4).await;
    let leader = quorum.leader(&[1, 2, 3]).await;
    for index in 0..10u8 {
        quorum
            .node(leader)
            .propose(create_record(&format!("t{index}"), index))
            .await
            .unwrap();
    }
    for id in 1..=3 {
        quorum.router.isolate(id);
        quorum.node(id).shutdown().await;
        quorum.disks[&id].crash();
    }
    quorum.router.nodes.lock().unwrap().clear();
    quorum.router.heal();
    for id in 1..=3 {
        quorum.boot(id).await;
    }
    let leader = quorum.leader(&[1, 2, 3]).await;
    quorum
        .node(leader)
        .propose(create_record("after", 99))
        .await
        .unwrap();
    quorum
        .until("every voter has all eleven topics", |quorum| {
            (1..=3).all(|id| quorum.node(id).image().topics.len() == 11)
        })
        .await;
}

/// Nodes heartbeat to the active controller; one stops, and the controller's timer fences it
/// after `node_session_timeout_ms` and takes it out of the ISR.
#[tokio::test(start_paused = true)]
async fn a_node_that_stops_heartbeating_is_fenced_through_the_quorum() {
    let quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let leader = quorum.leader(&[1, 2, 3]).await;
    quorum.register_all(leader).await;
    quorum
        .node(leader)
        .create_topic(topic_request("orders", 1, 3))
        .await
        .unwrap();
    let timers: Vec<_> = (1..=3)
        .map(|id| {
            let controller = quorum.node(id);
            tokio::spawn(async move { controller.run_fencing(&SimClock::new(0)).await })
        })
        .collect();
    let controller = quorum.node(leader);
    let heartbeats = tokio::spawn(async move {
        let clock = SimClock::new(0);
        loop {
            for id in [1, 2] {
                let epoch = controller.image().nodes[&id].node_epoch;
                controller.heartbeat(clock.now(), id, epoch).await.unwrap();
            }
            sleep(
                &clock,
                Duration::from_millis(NODE_HEARTBEAT_INTERVAL_MS_DEFAULT),
            )
            .await;
        }
    });
    quorum
        .until("node 3 is fenced on every voter", |quorum| {
            (1..=3).all(|id| quorum.node(id).image().nodes[&3].fenced)
        })
        .await;
    let image = quorum.node(leader).image();
    assert!(!image.nodes[&1].fenced && !image.nodes[&2].fenced);
    for state in &image.topics["orders"].partitions {
        assert!(!state.isr.contains(&3), "{state:?}");
        assert!(matches!(state.leader, Some(1 | 2)), "{state:?}");
    }
    heartbeats.abort();
    for timer in timers {
        timer.abort();
    }
}

/// The active controller's node dies with it: the new controller fences it one session
/// after it last heard it as its Raft leader, not one session after the election (the
/// failover of a leader on the controller's node then takes as long as any other's).
#[tokio::test(start_paused = true)]
async fn a_new_controller_fences_its_dead_predecessor_one_session_after_it_was_last_heard() {
    let quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let old = quorum.leader(&[1, 2, 3]).await;
    quorum.register_all(old).await;
    let clock = SimClock::new(0);
    // Nothing runs between the two lines: every append the others accepted was heard by now.
    quorum.router.isolate(old);
    let cut = clock.now();
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != old).collect();
    let new = quorum.leader(&others).await;
    let controller = quorum.node(new);
    let session = controller.decisions.node_session_timeout;
    for id in &others {
        let epoch = controller.image().nodes[id].node_epoch;
        controller.heartbeat(clock.now(), *id, epoch).await.unwrap();
    }
    let took_over = clock.now();
    assert!(took_over > cut, "an election takes time");
    controller.poll_fencing(took_over).await.unwrap();
    assert!(!controller.image().nodes[&old].fenced);
    // One session after the cut: a full session after the takeover would still be running.
    controller.poll_fencing(cut + session).await.unwrap();
    let image = controller.image();
    assert!(image.nodes[&old].fenced, "{:?}", image.nodes[&old]);
    assert!(others.iter().all(|id| !image.nodes[id].fenced));
}

/// B.5 #7 through openraft: a voter grants its vote, loses power, restarts, and refuses a
/// vote that does not beat the one it granted. (openraft's default leader id is (term, node
/// id), totally ordered, so a higher node id in the same term is a later vote it may grant;
/// what must survive the crash is that nothing at or below the granted vote gets one.)
#[tokio::test(start_paused = true)]
async fn a_voter_never_grants_a_vote_below_one_it_granted_across_a_power_loss() {
    use openraft::{CommittedLeaderId, LogId, Vote};
    let mut quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    quorum.leader(&[1, 2, 3]).await;
    quorum.router.isolate(1);
    // A follower refuses votes while its leader's lease lasts; let it lapse.
    sleep(&SimClock::new(0), Duration::from_secs(2)).await;
    let term = 1_000_000;
    // Candidates with a log far ahead of the voter's, so only the vote itself can refuse.
    let ask = |candidate: u64| {
        RaftMessage::Vote(VoteRequest {
            vote: Vote::new(term, candidate),
            last_log_id: Some(LogId::new(
                CommittedLeaderId::new(term - 1, candidate),
                1_000,
            )),
        })
    };
    let RaftReply::Vote(Ok(first)) = quorum
        .node(1)
        .handle_raft_message(SimClock::new(0).now(), ask(3))
        .await
        .unwrap()
    else {
        panic!("vote request failed");
    };
    assert!(first.vote_granted, "{first:?}");
    quorum.node(1).shutdown().await;
    quorum.disks[&1].crash();
    quorum.boot(1).await;
    let RaftReply::Vote(Ok(second)) = quorum
        .node(1)
        .handle_raft_message(SimClock::new(0).now(), ask(2))
        .await
        .unwrap()
    else {
        panic!("vote request failed");
    };
    assert!(
        !second.vote_granted,
        "a second vote in term {term}: {second:?}"
    );
    assert_eq!(
        second.vote,
        Vote::new(term, 3),
        "the refusal comes from the stored vote"
    );
}

/// A config whose voters disagree with the quorum stored in the data directory is refused
/// with one clear line, and the stored metadata is untouched.
#[tokio::test(start_paused = true)]
async fn a_config_whose_voters_disagree_with_the_stored_quorum_is_refused() {
    let quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let leader = quorum.leader(&[1, 2, 3]).await;
    quorum
        .node(leader)
        .propose(create_record("orders", 1))
        .await
        .unwrap();
    quorum
        .until("node 1 applied it", |quorum| {
            quorum.node(1).image().topics.contains_key("orders")
        })
        .await;
    quorum.router.isolate(1);
    quorum.node(1).shutdown().await;
    let mut voters = quorum.voters.clone();
    voters.insert(4, "127.0.0.1:9104".to_owned());
    let link = Arc::new(Link {
        from: 1,
        router: quorum.router.clone(),
    });
    let error = Controller::start(
        ControllerConfig::new(1, voters),
        quorum.disks[&1].clone(),
        &data_dir(1),
        link.clone(),
    )
    .await
    .err()
    .unwrap();
    let line = error.to_string();
    assert_eq!(
        line,
        "controller_voters [1, 2, 3, 4] disagree with the controller quorum stored in the data directory [1, 2, 3]"
    );
    let restarted = Controller::start(
        ControllerConfig::new(1, quorum.voters.clone()),
        quorum.disks[&1].clone(),
        &data_dir(1),
        link,
    )
    .await
    .unwrap();
    let restarted = Arc::new(restarted);
    quorum.router.nodes.lock().unwrap().insert(1, restarted);
    quorum.router.heal();
    quorum
        .until("node 1 has the topic again", |quorum| {
            quorum.node(1).image().topics.contains_key("orders")
        })
        .await;
}

/// Goal: a node outside `controller_voters` follows the committed log as a learner without
/// becoming a voter, the addition is idempotent, a new leader adds a node registered after
/// failover, and a learner restarts past the stored-voters check. Method: 3 voters and
/// learners 4 and 5 on the in-memory router, paused time.
#[tokio::test(start_paused = true)]
async fn registered_non_voters_follow_the_log_as_learners() {
    let mut quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    for id in [4, 5] {
        quorum.disks.insert(id, SimDisk::new(u64::from(id)));
        quorum.boot(id).await;
        assert!(quorum.node(id).is_learner());
    }
    let leader = quorum.leader(&[1, 2, 3]).await;
    quorum.register_all(leader).await;
    let register = |id: NodeId| RegisterRequest {
        node_id: id,
        address: format!("127.0.0.1:{}", 9100 + id),
        incarnation_id: u64::from(id),
        storage_id: None,
        kafka_listeners: None,
    };
    quorum
        .node(leader)
        .register(SystemClock.now(), register(4))
        .await
        .unwrap();
    quorum
        .node(leader)
        .create_topic(topic_request("orders", 1, 3))
        .await
        .unwrap();
    // Not yet a member: an unregistered, unadded node receives nothing.
    assert!(quorum.node(4).image().nodes.is_empty());
    // Only the leader adds; a follower's call is a no-op.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    quorum.node(follower).add_registered_learners().await;
    quorum.node(leader).add_registered_learners().await;
    quorum.node(leader).add_registered_learners().await;
    let membership = |id: NodeId| {
        let metrics = quorum.node(id).metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        (
            membership.voter_ids().collect::<Vec<_>>(),
            membership.learner_ids().collect::<Vec<_>>(),
        )
    };
    assert_eq!(membership(leader), (vec![1, 2, 3], vec![4]));
    quorum
        .until(
            "learner 4 applied the topic and the registrations",
            |quorum| {
                let image = quorum.node(4).image();
                image.topics.contains_key("orders") && image.nodes.len() == 4
            },
        )
        .await;
    quorum
        .until("learner 4 knows the controller", |quorum| {
            quorum.node(4).leader() == Some(leader)
        })
        .await;
    // A learner is never the controller.
    let error = quorum
        .node(4)
        .create_topic(topic_request("other", 2, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ControllerRequestError::NotController { leader: Some(l) } if l == leader),
        "{error:?}"
    );

    // The leader dies; node 5 registers with the new one, which adds it.
    quorum.router.isolate(leader);
    quorum.node(leader).shutdown().await;
    let rest: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    let next = quorum.leader(&rest).await;
    quorum
        .node(next)
        .register(SystemClock.now(), register(5))
        .await
        .unwrap();
    quorum.node(next).add_registered_learners().await;
    assert_eq!(membership(next), (vec![1, 2, 3], vec![4, 5]));
    quorum
        .until("learner 5 applied the registrations", |quorum| {
            quorum.node(5).image().nodes.len() == 5
        })
        .await;

    // Learner 4 restarts: its stored quorum still names voters 1-3, so it starts and
    // catches up from its own store and the new controller.
    quorum.node(4).shutdown().await;
    quorum.boot(4).await;
    assert!(quorum.node(4).is_learner());
    quorum
        .until("restarted learner 4 caught up", |quorum| {
            quorum.node(4).image() == quorum.node(next).image()
        })
        .await;
}

/// Review finding 2: a voter whose controller store was wiped restarts without a bootstrap
/// marker. It must not initialize a quorum of its own (a new term-0 history; with a majority
/// wiped, one that outvotes the committed metadata): it starts with no membership and no
/// log, and the existing quorum catches it up as an empty voter. Method: 3 voters on the
/// in-memory router, paused time; two of them wiped (a majority), the leader kept.
#[tokio::test(start_paused = true)]
async fn a_wiped_voter_does_not_initialize_a_quorum_and_is_caught_up() {
    let mut quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let leader = quorum.leader(&[1, 2, 3]).await;
    quorum
        .node(leader)
        .propose(create_record("orders", 1))
        .await
        .unwrap();
    quorum
        .until("every voter has the topic", |quorum| {
            (1..=3).all(|id| quorum.node(id).image().topics.contains_key("orders"))
        })
        .await;
    // The markers were consumed once each store held the membership.
    for id in 1..=3 {
        let marker = crate::controller::bootstrap::marker_path(&data_dir(id));
        assert_eq!(quorum.disks[&id].contents(&marker), None, "node {id}");
    }
    let wiped: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    for id in &wiped {
        quorum.node(*id).shutdown().await;
        quorum.router.nodes.lock().unwrap().remove(id);
        quorum
            .disks
            .insert(*id, SimDisk::new(1_000 + u64::from(*id)));
    }
    for id in &wiped {
        quorum.boot(*id).await;
        let metrics = quorum.node(*id).metrics().borrow().clone();
        assert_eq!(
            (
                metrics.membership_config.membership().voter_ids().count(),
                metrics.last_log_index
            ),
            (0, None),
            "wiped node {id} initialized a quorum of its own"
        );
    }
    quorum
        .until(
            "the wiped voters caught up from the kept leader",
            |quorum| {
                wiped.iter().all(|id| {
                    let node = quorum.node(*id);
                    node.image().topics.contains_key("orders") && node.leader() == Some(leader)
                })
            },
        )
        .await;
    // They are voters again: the quorum commits with them.
    quorum
        .node(leader)
        .propose(create_record("after", 2))
        .await
        .unwrap();
    quorum
        .until("every voter has both topics", |quorum| {
            (1..=3).all(|id| quorum.node(id).image().topics.len() == 2)
        })
        .await;
}

// Goal: a voter that lost its store votes again only once it holds an entry of its
// leader's term, never on a vote alone. Method: the pure rule over votes and applied ids.
#[test]
fn a_rejoining_voter_is_caught_up_only_with_an_entry_of_its_leaders_term() {
    use openraft::{CommittedLeaderId, LogId, Vote};
    let applied = |term: u64, index: u64| LogId::new(CommittedLeaderId::new(term, 1), index);
    let uncommitted = Vote::new(7, 3);
    let committed = Vote::new_committed(7, 3);
    // No leader accepted yet, whatever was applied.
    assert!(!caught_up_after_rejoin(&uncommitted, Some(&applied(7, 40))));
    // A leader accepted but nothing applied, or only entries of earlier terms.
    assert!(!caught_up_after_rejoin(&committed, None));
    assert!(!caught_up_after_rejoin(&committed, Some(&applied(6, 39))));
    // An entry of the leader's term (or a later one) applied.
    assert!(caught_up_after_rejoin(&committed, Some(&applied(7, 40))));
    assert!(caught_up_after_rejoin(&committed, Some(&applied(8, 41))));
}

// Goal: a voter back on a wiped disk never helps a deposed controller commit (simulator seed
// 5232: two controller histories). Method: 3 voters on the in-memory router, paused time. The
// first leader is cut off; the other two elect a new one and commit `kept`. One of them is
// wiped and comes back reachable only from the deposed leader (the new one is isolated), which
// then proposes `lost`. An empty store knows no term and would accept the deposed leader's
// appends; the rejoining voter first asks the other voters for their votes and, once the new
// leader answers, refuses the older term. Whatever each proposal was answered, an
// acknowledged one is on every voter at the end, and `kept` always is.
#[tokio::test(start_paused = true)]
async fn a_wiped_voter_does_not_help_a_deposed_controller_commit() {
    let mut quorum = Quorum::start(3, CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT).await;
    let deposed = quorum.leader(&[1, 2, 3]).await;
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != deposed).collect();
    for id in &others {
        quorum.router.cut_link(deposed, *id);
    }
    let next = quorum.leader(&others).await;
    quorum
        .node(next)
        .propose(create_record("kept", 1))
        .await
        .unwrap();
    quorum
        .until("both of the majority applied kept", |quorum| {
            others
                .iter()
                .all(|id| quorum.node(*id).image().topics.contains_key("kept"))
        })
        .await;
    let (wiped, keeper) = (others[0], others[1]);
    quorum.node(wiped).shutdown().await;
    quorum.router.nodes.lock().unwrap().remove(&wiped);
    quorum
        .disks
        .insert(wiped, SimDisk::new(2_000 + u64::from(wiped)));
    quorum.router.heal();
    quorum.router.isolate(keeper);
    quorum.boot(wiped).await;
    let deposed_node = quorum.node(deposed);
    let write = tokio::spawn(async move { deposed_node.propose(create_record("lost", 2)).await });
    // Give the deposed leader time to try (it retries its appends every heartbeat).
    sleep(&SimClock::new(0), Duration::from_secs(3)).await;
    quorum.router.heal();
    quorum
        .until("every voter follows one leader and holds kept", |quorum| {
            let leaders: BTreeSet<Option<NodeId>> =
                (1..=3).map(|id| quorum.node(id).leader()).collect();
            leaders.len() == 1
                && !leaders.contains(&None)
                && (1..=3).all(|id| quorum.node(id).image().topics.contains_key("kept"))
        })
        .await;
    let outcome = write.await.unwrap();
    if outcome.is_ok() {
        quorum
            .until("the acknowledged write is on every voter", |quorum| {
                (1..=3).all(|id| quorum.node(id).image().topics.contains_key("lost"))
            })
            .await;
    }
    for id in 1..=3 {
        assert!(
            quorum.node(id).image().topics.contains_key("kept"),
            "node {id}"
        );
    }
}

// Goal: the survey's size and rules. Method: the pure functions.
#[test]
fn a_rejoining_voter_asks_enough_voters_and_refuses_older_leaders() {
    use openraft::Vote;
    // Others asked, for 1..=5 voters: every elected majority keeps one of them.
    let needed: Vec<usize> = (1..=5).map(term_survey_answers_needed).collect();
    assert_eq!(needed, vec![0, 1, 2, 2, 3]);
    for voters in 1..=9usize {
        let majority_without_self = voters / 2 + 1 - 1;
        let others = voters - 1;
        let asked = term_survey_answers_needed(voters);
        assert!(asked <= others);
        if voters > 1 {
            assert!(asked + majority_without_self > others, "{voters} voters");
        }
    }
    let floor = highest_surveyed_vote([
        Vote::new(4, 2),
        Vote::new_committed(5, 3),
        Vote::new(5, 1),
        Vote::new_committed(3, 1),
    ])
    .unwrap();
    assert_eq!(floor, Vote::new_committed(5, 3));
    assert_eq!(highest_surveyed_vote([]), None);
    assert!(leader_older_than_survey(&Vote::new_committed(4, 1), &floor));
    assert!(!leader_older_than_survey(
        &Vote::new_committed(5, 3),
        &floor
    ));
    assert!(!leader_older_than_survey(
        &Vote::new_committed(6, 1),
        &floor
    ));
}

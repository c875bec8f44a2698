//! Fuzz target: arbitrary bytes as node-to-node frames. The whole input is decoded as a forwarded request and as a
//! forwarded response (`consort_node::net::forwarding`); whatever decodes must survive a re-encoding unchanged.
//! Then the first byte names the sending Raft id and the receiving replica, and the rest is delivered as a Raft
//! message (`Event::Receive`, the node's path for received frames: size limit, protobuf decoding, the guard of
//! `consort_consensus` and raft-rs) to a replica of a running three-replica cluster (see `consort_fuzz`). Must never
//! panic, and no replica may halt, on this message or on what the cluster exchanges after stepping it.
#![no_main]

use consort_consensus::testing::Cluster;
use consort_consensus::{Action, ConsensusError, Event};
use consort_fuzz::{raft_split, running_cluster, step_and_settle, REPLICAS};
use consort_node::net::forwarding::{ForwardedRequest, ForwardedResponse};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    /// The running cluster, reused while inputs leave it as it was (refused before Raft stepped them).
    static CLUSTER: RefCell<Option<Cluster>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ForwardedRequest::decode(data) {
        assert_eq!(ForwardedRequest::decode(&request.encode()).as_ref(), Ok(&request));
    }
    if let Ok(response) = ForwardedResponse::decode(data) {
        assert_eq!(ForwardedResponse::decode(&response.encode()).as_ref(), Ok(&response));
    }

    let Some((from, to, message)) = raft_split(data) else {
        return;
    };
    CLUSTER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut cluster = slot.take().unwrap_or_else(|| running_cluster().0);
        let actions = cluster.step(
            to,
            Event::Receive {
                from: consort_consensus::RaftId(from),
                message: message.to_vec(),
            },
        );
        for a in &actions {
            assert!(
                !matches!(a, Action::Halted { .. }),
                "a peer's message halted replica {}: {a:?}",
                to + 1
            );
        }
        // Refused before raft-rs saw it: the cluster is as it was, and the next input may use it.
        let untouched = actions.iter().any(|a| {
            matches!(
                a,
                Action::Dropped {
                    error: ConsensusError::MalformedMessage(_) | ConsensusError::TooLarge { .. },
                    ..
                }
            )
        });
        if untouched && cluster.net.is_empty() && cluster.nodes.iter().all(|n| n.pending.is_empty()) {
            *slot = Some(cluster);
            return;
        }
        // Stepped: let the cluster carry on for a while (what the replica answered, what the others make of it),
        // then start the next input from a fresh cluster.
        let mut seen = Vec::new();
        for i in (0..REPLICAS as usize).map(|k| (to + k) % REPLICAS as usize) {
            let halts = step_and_settle(&mut cluster, i, Event::Tick, &mut seen);
            assert!(
                halts.is_empty(),
                "after a peer's message to replica {}, a replica halted: {halts:?}",
                to + 1
            );
        }
    });
});

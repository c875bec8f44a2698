//! A running node as the endpoints see it: its engine, the application it serves, and the forwarding client that
//! sends writes it cannot execute to the primary. Each part owns one thing; the node only holds them together.

use crate::apps::App;
use crate::engine::{Engine, RaftTransport};
use crate::net::channels::{Channels, FrameKind};
use crate::net::forwarding::Forwarder;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// One node: engine, application, forwarding and (once attached) the node-to-node channels.
pub struct Node {
    engine: Arc<Engine>,
    app: Box<dyn App>,
    forwarder: Arc<Forwarder>,
    channels: OnceLock<Arc<Channels>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The channels carry the engine's Raft messages.
impl RaftTransport for Channels {
    fn send_raft(&self, node_id: &str, message: Bytes) {
        self.send(node_id, FrameKind::Raft, message);
    }
}

impl Node {
    /// A node serving `app` on `engine`. Requests forwarded to a primary that lost its role are answered as soon as
    /// the engine learns of the new primary.
    pub fn new(engine: Arc<Engine>, app: Box<dyn App>) -> Arc<Self> {
        let forwarder = Arc::new(Forwarder::default());
        let f = forwarder.clone();
        engine.on_primary_change(Box::new(move |primary| f.abandon_all_but(Some(primary))));
        Arc::new(Node {
            engine,
            app,
            forwarder,
            channels: OnceLock::new(),
        })
    }

    /// The transaction engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The application this node serves under `/app`.
    pub fn app(&self) -> &dyn App {
        self.app.as_ref()
    }

    /// Requests this node forwarded to the primary and waits on.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The node-to-node channels, once attached.
    pub fn channels(&self) -> Option<&Arc<Channels>> {
        self.channels.get()
    }

    /// Attaches the node-to-node channels: Raft messages and forwarded requests go through them from now on.
    pub fn attach_channels(&self, channels: Arc<Channels>) {
        self.engine.set_transport(channels.clone());
        let _ = self.channels.set(channels);
    }
}

//! A Consort node: the only crate with server IO (tokio, TLS, HTTP, files, timers); it drives the sans-IO cores.
#![forbid(unsafe_code)]

pub mod apps;
pub mod channels;
pub mod client;
pub mod config;
pub mod forwarding;
pub mod gov;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod offload;
pub mod openapi;
pub mod replication;
pub mod service;
pub mod snapshots;
pub mod storage;
pub mod tls;

use crate::config::NodeConfig;
use crate::identity::Identities;
use crate::service::Service;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Io(String),
}

/// Subject alternative names for the node certificate: the RPC host plus any configured extras.
fn subject_alt_names(cfg: &NodeConfig) -> Vec<String> {
    let mut sans = cfg.network.subject_alt_names.clone();
    if let Ok(addr) = cfg.network.rpc_address.parse::<std::net::SocketAddr>() {
        sans.push(addr.ip().to_string());
    }
    if !sans.iter().any(|s| s == "localhost") {
        sans.push("localhost".into());
    }
    sans.dedup();
    sans
}

/// Loads (restart) or creates (genesis) the node's identity and opens its service engine.
pub fn open_service(cfg: NodeConfig) -> Result<Arc<Service>, NodeError> {
    let dir = cfg.storage.secrets_dir.clone();
    let ids = if Identities::exist(&dir) {
        Identities::load(&dir)?
    } else {
        let ledger_has_files = std::fs::read_dir(&cfg.storage.ledger_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if ledger_has_files {
            return Err(NodeError::Io(format!(
                "{} holds a ledger but {} holds no identity: refusing to start a new service over it",
                cfg.storage.ledger_dir.display(),
                dir.display()
            )));
        }
        Identities::generate(&dir, &subject_alt_names(&cfg))?
    };
    Ok(Service::open(cfg, ids, Box::new(apps::Apps::builtin()))?)
}

/// Worker threads of the runtime that carries node-to-node channels (one: the traffic is a few large frames).
pub const NODE_CHANNEL_THREADS: usize = 1;

/// Runs a node (genesis or restart) until SIGINT or SIGTERM.
pub async fn run(cfg: NodeConfig) -> Result<(), NodeError> {
    let svc = open_service(cfg)?;
    serve_node(svc).await
}

/// Joins the service named in `cfg.join` (or restarts a node that joined before) and runs until SIGINT or SIGTERM.
pub async fn join(cfg: NodeConfig) -> Result<(), NodeError> {
    let svc = replication::join_service(cfg).await?;
    serve_node(svc).await
}

/// Serves a node's RPC and node-to-node interfaces and drives its replica until SIGINT or SIGTERM.
async fn serve_node(svc: Arc<Service>) -> Result<(), NodeError> {
    let server_runtime = tokio::runtime::Handle::current();
    let addr = svc.cfg.network.rpc_address.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| NodeError::Io(format!("bind {addr}: {e}")))?;
    let tls = tls::server_config(vec![svc.ids.node_cert_der.clone()], &svc.ids.node_key)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // The replica's ticker and persister run on threads of their own: they take the engine lock, and the persister
    // fsyncs, which must not stall the async workers serving requests (nor the persister the ticker).
    let stopping = Arc::new(AtomicBool::new(false));
    let spawn = |name: &str, run: fn(&service::Service, &AtomicBool)| {
        let svc = svc.clone();
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&svc, &stopping))
            .map_err(|e| NodeError::Io(e.to_string()))
    };
    let ticker = spawn("replica-ticker", service::Service::drive)?;
    let persister = spawn("replica-persister", service::Service::persist_loop)?;

    let mut receiver = None;
    // Node-to-node traffic has a runtime (one thread) of its own: under load the request runtime's queues hold
    // thousands of tasks, and an append or an acknowledgement waiting behind them delays every commit.
    let net = ChannelRuntime::build()?;
    if let Some(n2n) = svc.cfg.network.node_to_node_address.clone() {
        let _in_net = net.enter();
        let (channels, mut incoming) =
            channels::Channels::new(&svc.ids.node_key, &svc.ids.node_cert_der, &svc.ids.service_cert_pem)
                .map_err(|e| NodeError::Io(e.to_string()))?;
        let n2n_listener = std::net::TcpListener::bind(&n2n)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| NodeError::Io(format!("bind {n2n}: {e}")))?;
        svc.set_channels(channels.clone());
        net.spawn(channels.clone().listen(n2n_listener, stop_rx.clone()));
        server_runtime.spawn(replication::reconcile_loop(svc.clone(), channels, stop_rx.clone()));
        // Raft messages are fed to the replica on a thread of their own (stepping takes the engine lock); forwarded
        // requests run as tasks, and answers to this node's forwarded requests go to the waiting callers.
        let svc2 = svc.clone();
        let runtime = server_runtime.clone();
        receiver = Some(
            std::thread::Builder::new()
                .name("raft-receiver".into())
                .spawn(move || {
                    while let Some(m) = incoming.blocking_recv() {
                        match m.kind {
                            channels::FrameKind::Raft => svc2.receive(service::raft_id_of(&m.from), m.frame.to_vec()),
                            channels::FrameKind::ForwardedRequest => {
                                runtime.spawn(forwarding::serve(svc2.clone(), m.from, m.frame));
                            }
                            channels::FrameKind::ForwardedResponse => svc2.forwarder.complete(&m.from, &m.frame),
                        }
                    }
                })
                .map_err(|e| NodeError::Io(e.to_string()))?,
        );
    }

    tracing::info!(node_id = %svc.ids.node_id, %addr, "node listening");
    println!("node {} listening on https://{addr}", svc.ids.node_id);
    let server = tokio::spawn(http::serve(svc.clone(), listener, tls, stop_rx));
    wait_for_signal().await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = server.await;
    stopping.store(true, Ordering::Release);
    let _ = ticker.join();
    let _ = persister.join();
    // The receiver thread ends when the channels are dropped with the runtimes.
    drop(receiver);
    Ok(())
}

/// The node-to-node runtime, shut down without waiting when dropped: dropping a runtime the usual way blocks, which
/// panics inside the request runtime (on every return from [`serve_node`], errors included).
struct ChannelRuntime(Option<tokio::runtime::Runtime>);

impl ChannelRuntime {
    fn build() -> Result<Self, NodeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(NODE_CHANNEL_THREADS)
            .thread_name("node-channels")
            .enable_all()
            .build()
            .map_err(|e| NodeError::Io(format!("node-to-node runtime: {e}")))?;
        Ok(ChannelRuntime(Some(rt)))
    }
}

impl std::ops::Deref for ChannelRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("taken only when dropped")
    }
}

impl Drop for ChannelRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

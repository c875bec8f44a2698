//! Starting and running a node: open (genesis or restart) or join, then serve the RPC and node-to-node
//! interfaces, drive the replica's threads, keep peers and membership in line with the nodes table, and stop
//! cleanly on SIGINT or SIGTERM.

use crate::config::NodeConfig;
use crate::engine::{node_records, Engine, OpenOptions, Start, StartRefusal};
use crate::identity::Identities;
use crate::net::channels::{Channels, FrameKind};
use crate::node::{Node, SelfAttestation};
use crate::{apps, NodeError};
use consort_consensus::NodeId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the node re-reads the nodes table to update peers and membership.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(100);

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
pub fn open_node(cfg: NodeConfig) -> Result<Arc<Node>, NodeError> {
    // The platform first: a node that cannot attest refuses to start before it writes anything.
    let platform: Arc<dyn consort_attest::Platform> = Arc::from(crate::platform::open(&cfg.attestation)?);
    let dir = cfg.storage.secrets_dir.clone();
    // An identity on disk means a restart, never a new service (see `Start`).
    let (ids, start) = if Identities::exist(&dir) {
        (Identities::load(platform.as_ref(), &dir)?, Start::Restart)
    } else {
        let ledger_has_files = std::fs::read_dir(&cfg.storage.ledger_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if dir.join(crate::engine::JOIN_FILE).exists() {
            return Err(NodeError::Refused(StartRefusal::InterruptedJoin { secrets_dir: dir }));
        }
        if ledger_has_files {
            return Err(NodeError::Refused(StartRefusal::LedgerWithoutIdentity {
                ledger_dir: cfg.storage.ledger_dir.clone(),
                secrets_dir: dir,
            }));
        }
        (
            Identities::generate(platform.as_ref(), &dir, &subject_alt_names(&cfg))?,
            Start::Genesis,
        )
    };
    let attestation = attest_on(platform.as_ref(), &ids.node_key)?;
    let options = OpenOptions {
        start,
        attestation: Some(attestation.genesis()),
        platform: Some(platform.clone()),
    };
    let engine = Engine::open_with(cfg, ids, options)?;
    let node = Node::new(engine.clone(), Box::new(apps::Apps::standard(engine)));
    node.attach_attestation(attestation);
    Ok(node)
}

/// Starts a new service on a copy of an old service's ledger (`consort node recover`): the ledger directory of
/// `cfg` holds the copy (from seqno 1); the secrets directory must be empty. A node that recovered before (its
/// identity and recovery record exist) restarts as [`open_node`] does.
pub fn recover_node(cfg: NodeConfig) -> Result<Arc<Node>, NodeError> {
    use crate::engine::recovery;
    let platform: Arc<dyn consort_attest::Platform> = Arc::from(crate::platform::open(&cfg.attestation)?);
    let dir = cfg.storage.secrets_dir.clone();
    if Identities::exist(&dir) {
        if dir.join(recovery::RECOVERY_RECORD_FILE).exists() {
            return open_node(cfg);
        }
        return Err(NodeError::Refused(StartRefusal::RecoverOverIdentity {
            secrets_dir: dir,
        }));
    }
    let base = recovery::prepare_old_ledger(&cfg.storage.ledger_dir, cfg.ledger.chunk_threshold_bytes)
        .map_err(crate::engine::EngineError::from)?;
    tracing::info!(base, "recovery: the old ledger ends at this signature transaction");
    let mut ids = Identities::generate(platform.as_ref(), &dir, &subject_alt_names(&cfg))?;
    // The new service's secret encrypts what follows the old ledger.
    ids.ledger_secrets = recovery::recovered_keyring(base, &ids.ledger_secrets);
    crate::identity::save_ledger_secrets(platform.as_ref(), &dir, &ids.ledger_secrets)?;
    recovery::save_record(platform.as_ref(), &dir, &recovery::RecoveryRecord::new(base, &ids))
        .map_err(crate::engine::EngineError::from)?;
    let attestation = attest_on(platform.as_ref(), &ids.node_key)?;
    let options = OpenOptions {
        start: Start::Recover,
        attestation: Some(attestation.genesis()),
        platform: Some(platform.clone()),
    };
    let ledger_dir = cfg.storage.ledger_dir.clone();
    let engine = Engine::open_with(cfg, ids, options).map_err(|e| recovery::explain_replay_failure(&ledger_dir, e))?;
    let node = Node::new(engine.clone(), Box::new(apps::Apps::standard(engine)));
    node.attach_attestation(attestation);
    Ok(node)
}

/// Recovers a service (see [`recover_node`]) and runs until SIGINT or SIGTERM.
pub async fn recover(cfg: NodeConfig) -> Result<(), NodeError> {
    serve_node(recover_node(cfg)?).await
}

/// This node's attestation: evidence for `node_key` on the platform its configuration opened (virtual: SHA-256 of
/// the running executable; SEV-SNP: a fresh report from the guest device), checked by the same verifier peers run;
/// a platform without a hardware guarantee says so in the log here.
pub(crate) fn attest_on(
    platform: &dyn consort_attest::Platform,
    node_key: &consort_crypto::SigningKey,
) -> Result<SelfAttestation, NodeError> {
    Ok(SelfAttestation::produce(
        platform,
        &node_key.verifying_key().to_spki_der(),
    )?)
}

/// Worker threads of the runtime that carries node-to-node channels (one: the traffic is a few large frames).
pub const NODE_CHANNEL_THREADS: usize = 1;

/// Runs a node (genesis or restart) until SIGINT or SIGTERM.
pub async fn run(cfg: NodeConfig) -> Result<(), NodeError> {
    serve_node(open_node(cfg)?).await
}

/// Joins the service named in `cfg.join` (or restarts a node that joined before) and runs until SIGINT or SIGTERM.
pub async fn join(cfg: NodeConfig) -> Result<(), NodeError> {
    serve_node(crate::joiner::join_service(cfg).await?).await
}

/// Serves a node's RPC and node-to-node interfaces and drives its replica until SIGINT or SIGTERM.
async fn serve_node(node: Arc<Node>) -> Result<(), NodeError> {
    let engine = node.engine().clone();
    let server_runtime = tokio::runtime::Handle::current();
    let addr = engine.config().network.rpc_address.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| NodeError::Bind {
            address: addr.clone(),
            source,
        })?;
    let tls = crate::net::tls::server_config(
        vec![engine.identities().node_cert_der.clone()],
        &engine.identities().node_key,
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // The replica's ticker and persister run on threads of their own: they take the engine lock, and the persister
    // fsyncs, which must not stall the async workers serving requests (nor the persister the ticker).
    let stopping = Arc::new(AtomicBool::new(false));
    let spawn = |name: &str, run: fn(&Engine, &AtomicBool)| {
        let engine = engine.clone();
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&engine, &stopping))
            .map_err(|source| NodeError::Start {
                what: "replica thread",
                source,
            })
    };
    let ticker = spawn("replica-ticker", Engine::drive)?;
    let persister = spawn("replica-persister", Engine::persist_loop)?;

    let mut receiver = None;
    // Node-to-node traffic has a runtime (one thread) of its own: under load the request runtime's queues hold
    // thousands of tasks, and an append or an acknowledgement waiting behind them delays every commit.
    let net = ChannelRuntime::build()?;
    if let Some(n2n) = engine.config().network.node_to_node_address.clone() {
        let _in_net = net.enter();
        let (channels, incoming) = Channels::new(
            &engine.identities().node_key,
            &engine.identities().node_cert_der,
            &engine.identities().service_cert_pem,
        )?;
        let n2n_listener = std::net::TcpListener::bind(&n2n)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| NodeError::Bind {
                address: n2n.clone(),
                source,
            })?;
        node.attach_channels(channels.clone());
        net.spawn(channels.clone().listen(n2n_listener, stop_rx.clone()));
        server_runtime.spawn(reconcile_loop(node.clone(), channels.clone(), stop_rx.clone()));
        receiver = Some(spawn_receiver(
            node.clone(),
            channels,
            incoming,
            server_runtime.clone(),
        )?);
    }

    // JWT issuers' signing keys (acts on the primary only).
    let refresh_every = std::time::Duration::from_secs(engine.config().jwt.key_refresh_interval_s);
    server_runtime.spawn(crate::auth::refresh::refresh_loop(
        engine.clone(),
        refresh_every,
        stop_rx.clone(),
    ));
    tracing::info!(node_id = %engine.identities().node_id, %addr, "node listening");
    println!("node {} listening on https://{addr}", engine.identities().node_id);
    let handler = {
        let node = node.clone();
        move |peer, req| crate::api::handle(node.clone(), peer, req)
    };
    let server = tokio::spawn(crate::net::http::serve(engine.clone(), listener, tls, stop_rx, handler));
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

/// Starts the thread that feeds frames from the node-to-node channels to the node: Raft messages are stepped into
/// the replica on it (stepping takes the engine lock), forwarded requests run as tasks on `runtime`, and answers to
/// this node's forwarded requests go to the waiting callers.
fn spawn_receiver(
    node: Arc<Node>,
    admission: Arc<Channels>,
    mut incoming: tokio::sync::mpsc::Receiver<crate::net::channels::Incoming>,
    runtime: tokio::runtime::Handle,
) -> Result<std::thread::JoinHandle<()>, NodeError> {
    std::thread::Builder::new()
        .name("raft-receiver".into())
        .spawn(move || {
            while let Some(m) = incoming.blocking_recv() {
                // Frames still queued from a peer evicted since they arrived are not acted on.
                if !admission.is_admitted(&m.from) {
                    tracing::debug!(from = %m.from, "frame from a node no longer admitted dropped");
                    continue;
                }
                match m.kind {
                    FrameKind::Raft => node.engine().receive(m.from.raft_id(), m.frame.to_vec()),
                    FrameKind::ForwardedRequest => {
                        runtime.spawn(crate::api::forwarded::serve(node.clone(), m.from, m.frame));
                    }
                    FrameKind::ForwardedResponse => node.forwarder().complete(&m.from, &m.frame),
                }
            }
        })
        .map_err(|source| NodeError::Start {
            what: "raft-receiver thread",
            source,
        })
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
            .map_err(|source| NodeError::Start {
                what: "node-to-node runtime",
                source,
            })?;
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

/// Keeps channels, trusted peers and (on the primary) the Raft membership in line with the nodes table.
async fn reconcile_loop(node: Arc<Node>, channels: Arc<Channels>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    channels.attach_metrics(node.engine().metrics().peers.clone());
    loop {
        let engine = node.engine().clone();
        let channels2 = channels.clone();
        let _ = tokio::task::spawn_blocking(move || reconcile_once(&engine, &channels2)).await;
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn reconcile_once(svc: &Engine, channels: &Arc<Channels>) {
    let records = node_records(svc);
    // Who may use the node-to-node channels: Trusted nodes, and the members of the Raft configuration as this node
    // sees it, so that a node no longer Trusted (Retired) keeps its access only while it is still in the
    // membership, because the change that removes it may need its acknowledgement. Once removed it loses its
    // connections; a Pending node never had any.
    let own = &svc.identities().node_id;
    // The consensus state names a peer by node id, or by Raft id when its node id is not known yet: only the
    // former can be admitted.
    let mut admitted: std::collections::HashSet<NodeId> = svc
        .consensus_state()
        .peers
        .into_keys()
        .filter_map(|name| name.parse().ok())
        .collect();
    admitted.extend(
        records
            .iter()
            .filter(|r| r.status == "Trusted")
            .map(|r| r.node_id.clone()),
    );
    admitted.remove(own);
    // A node that joined and has not yet replicated its own admission does not know the current nodes from its
    // table: until it does, it admits and dials the Trusted nodes its join answer named.
    let caught_up = records.iter().any(|r| &r.node_id == own);
    if !caught_up {
        for p in svc
            .join_seed()
            .iter()
            .filter(|p| p.status == "Trusted" && &p.node_id != own)
        {
            admitted.insert(p.node_id.clone());
            if let Some(addr) = &p.node_to_node_address {
                channels.set_peer(&p.node_id, addr);
            }
        }
    }
    channels.set_admitted(admitted.clone());
    let mut trusted = vec![];
    let mut retired = vec![];
    for r in &records {
        match r.status.as_str() {
            "Retired" => retired.push(r.node_id.raft_id()),
            "Trusted" => {
                trusted.push(r.node_id.raft_id());
                if let (Some(_), Some(cert)) = (&r.node_to_node_address, &r.cert_pem) {
                    svc.add_peer(&r.node_id, cert);
                }
            }
            _ => {}
        }
        // Retiring members still in the membership keep their outgoing connection too (same reason as above).
        if let (true, Some(addr)) = (admitted.contains(&r.node_id), &r.node_to_node_address) {
            channels.set_peer(&r.node_id, addr);
        }
    }
    svc.reconcile_membership(&trusted, &retired);
}

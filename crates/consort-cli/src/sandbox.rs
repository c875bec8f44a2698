//! `consort sandbox`: a local network for development: identities, node configs, node processes, open service.

use crate::error::CliError;
use consort_crypto::x509::{self, CertParams};
use consort_crypto::{Curve, SigningKey};
use consort_node::config::{IdentityConfig, NodeConfig};
use consort_node::joiner::JOINING_NODE_ID_FILE;
use consort_node::net::client::{Connection, Protocol};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the sandbox waits for its service to open.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest network the sandbox starts.
pub const MAX_SANDBOX_NODES: usize = 7;
/// Most recovery members the sandbox makes: each gets an RSA-2048 key generated at start (about a second each in
/// a debug build), and a majority of them must vote for each of the sandbox's proposals.
pub const MAX_SANDBOX_RECOVERY_MEMBERS: usize = 16;
/// Node i's node-to-node channel listens on port P + NODE_TO_NODE_PORT_OFFSET + i.
pub const NODE_TO_NODE_PORT_OFFSET: usize = 100;

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Number of nodes (1 to 7): node 0 starts the service, the others join it.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Directory for certificates, keys, configs and node state (wiped if it holds an earlier sandbox).
    #[arg(long, default_value = "workspace/sandbox")]
    pub workspace: PathBuf,
    /// Node i serves clients on port P+i.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Signature interval in transactions.
    #[arg(long, default_value_t = 5000)]
    pub signature_interval_tx: u64,
    /// Signature interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub signature_interval_ms: u64,
    /// Snapshot at the first signature this many transactions after the last snapshot (0: never).
    #[arg(long, default_value_t = consort_node::config::LedgerConfig::default().snapshot_tx_interval)]
    pub snapshot_interval_tx: u64,
    /// Exit once the service is open, leaving the nodes running (for scripts and tests).
    #[arg(long)]
    pub detach: bool,
    /// Number of members, member0 to member<N-1>, each with a signing key and an RSA encryption key, so each is
    /// a recovery member and gets a recovery share when the service opens (1 to 16).
    #[arg(long, default_value_t = 1)]
    pub recovery_members: usize,
    /// Number of recovery shares needed to recover the service (1 to --recovery-members).
    #[arg(long, default_value_t = 1)]
    pub recovery_threshold: usize,
}

impl SandboxArgs {
    /// Refuses sizes the sandbox does not make: 1 <= nodes <= 7, 1 <= threshold <= recovery members <= 16.
    fn validate(&self) -> Result<(), CliError> {
        if self.nodes == 0 || self.nodes > MAX_SANDBOX_NODES {
            return Err(CliError::SandboxSize);
        }
        let (n, k) = (self.recovery_members, self.recovery_threshold);
        if n == 0 || n > MAX_SANDBOX_RECOVERY_MEMBERS || k == 0 || k > n {
            return Err(CliError::SandboxRecovery {
                members: n,
                threshold: k,
            });
        }
        Ok(())
    }
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(CliError::file(path))
}

/// Generates `<name>_privk.pem` and `<name>_cert.pem` (P-384, self-signed), as CCF's keygenerator.sh does.
fn keygen(dir: &Path, name: &str) -> Result<(), CliError> {
    let key = SigningKey::generate(Curve::P384);
    let cert = x509::self_signed(&key, &CertParams::new(name))?;
    identity_write(&dir.join(format!("{name}_privk.pem")), &key.to_pkcs8_pem())?;
    write(&dir.join(format!("{name}_cert.pem")), &cert.pem)
}

fn identity_write(path: &Path, text: &str) -> Result<(), CliError> {
    Ok(consort_node::identity::write_private(path, text.as_bytes())?)
}

/// How a sandbox node comes up: node 0 starts the service, the others join it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    Start,
    Join,
}

impl Launch {
    /// The `consort node` subcommand.
    fn verb(self) -> &'static str {
        match self {
            Launch::Start => "start",
            Launch::Join => "join",
        }
    }
}

struct Children(Vec<Child>);

impl Children {
    /// Fails if node 0 has exited, with its error log: the sandbox cannot come up without it.
    fn check_node0(&mut self, node0: &Path) -> Result<(), CliError> {
        match self.0.first_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                let log = std::fs::read_to_string(node0.join("err.log")).unwrap_or_default();
                Err(CliError::NodeExited { status, log })
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn run(args: SandboxArgs) -> Result<(), CliError> {
    args.validate()?;
    let ws = prepare_workspace(&args.workspace, args.recovery_members)?;
    let sandbox = Sandbox {
        exe: std::env::current_exe()?,
        node0: ws.join("nodes/0"),
        address: format!("127.0.0.1:{}", args.port),
        deadline: Instant::now() + OPEN_TIMEOUT,
        ws,
        args,
    };
    let mut children = Children(vec![]);
    let mut nodes_json = vec![];
    for i in 0..sandbox.args.nodes {
        let launch = if i == 0 {
            Launch::Start
        } else {
            // Joiners need the service certificate node 0 created.
            sandbox.wait_for_service_cert(&mut children).await?;
            Launch::Join
        };
        nodes_json.push(sandbox.start_node(i, launch, &mut children)?);
    }
    let service_cert = sandbox.wait_until_open(&mut children).await?;
    let ws = &sandbox.ws;
    for (i, n) in nodes_json.iter_mut().enumerate() {
        let dir = ws.join("nodes").join(i.to_string());
        if let Ok(cert) = std::fs::read_to_string(dir.join("node_cert.pem")) {
            if let Ok(parsed) = consort_crypto::ParsedCert::from_pem(&cert) {
                n["node_id"] = serde_json::Value::String(parsed.key_id());
            }
        }
    }
    write(&ws.join("service_cert.pem"), &service_cert)?;
    write(
        &ws.join("sandbox.json"),
        &serde_json::to_string_pretty(&serde_json::json!({"nodes": nodes_json}))?,
    )?;

    let address = &sandbox.address;
    println!("Service is open. Primary: https://{address}");
    println!("Workspace: {}", ws.display());
    print_members(ws, sandbox.args.recovery_members, sandbox.args.recovery_threshold);
    println!(
        "Try: curl --cacert {0}/service_cert.pem --cert {0}/user0_cert.pem --key {0}/user0_privk.pem https://{address}/app/log/private -H 'content-type: application/json' -d '{{\"id\": 1, \"msg\": \"hello\"}}'",
        ws.display()
    );
    if sandbox.args.detach {
        // Leave the nodes running: forget the children so Drop does not stop them.
        std::mem::forget(children);
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");
    wait_until_stopped(&mut children).await;
    println!("Stopping nodes.");
    Ok(())
}

/// Says where the members' keys are and how a member submits a recovery share.
fn print_members(ws: &Path, members: usize, threshold: usize) {
    let last = members - 1;
    println!(
        "Members: member0..member{last}, all recovery members, {threshold} of {members} shares recover the service. \
         In {}: member<i>_cert.pem and member<i>_privk.pem (signing), member<i>_enc_pubk.pem and \
         member<i>_enc_privk.pem (recovery share encryption).",
        ws.display()
    );
    println!(
        "Check member{last}'s share: consort gov --workspace {0} --cert {0}/member{last}_cert.pem --key \
         {0}/member{last}_privk.pem recovery-share --check-only",
        ws.display()
    );
}

/// The id of the joiner whose secrets directory is `dir` (its `joining_node_id` file), if `/node/network/nodes`
/// (`nodes`) lists it as Pending: a joiner members still have to trust.
pub(crate) fn pending_joiner(dir: &Path, nodes: &serde_json::Value) -> Option<String> {
    let id = std::fs::read_to_string(dir.join(JOINING_NODE_ID_FILE)).ok()?;
    let id = id.trim();
    let pending = nodes["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["node_id"] == id && n["status"] == "Pending");
    pending.then(|| id.to_string())
}

/// Clears an earlier sandbox from `dir` and writes the identities: `members` members (member0, member1, ...: each
/// a signing key and certificate, and a recovery encryption key pair) and user0. Returns the workspace's absolute
/// path.
pub(crate) fn prepare_workspace(dir: &Path, members: usize) -> Result<PathBuf, CliError> {
    if dir.join("sandbox.json").exists() {
        std::fs::remove_dir_all(dir).map_err(|source| CliError::ClearWorkspace {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::create_dir_all(dir).map_err(CliError::file(dir))?;
    let ws = std::fs::canonicalize(dir).map_err(CliError::file(dir))?;
    for i in 0..members {
        keygen(&ws, &format!("member{i}"))?;
        let (enc_priv, enc_pub) =
            consort_crypto::rsa_keys::generate_pem(consort_crypto::rsa_keys::MEMBER_ENCRYPTION_KEY_BITS)?;
        identity_write(&ws.join(format!("member{i}_enc_privk.pem")), &enc_priv)?;
        write(&ws.join(format!("member{i}_enc_pubk.pem")), &enc_pub)?;
    }
    keygen(&ws, "user0")?;
    Ok(ws)
}

/// One sandbox being brought up.
struct Sandbox {
    args: SandboxArgs,
    /// The workspace (absolute).
    ws: PathBuf,
    /// This program, which runs the nodes.
    exe: PathBuf,
    /// Node 0's directory: it starts the service and is primary until the service opens.
    node0: PathBuf,
    /// Node 0's client address.
    address: String,
    /// When the service must be open.
    deadline: Instant,
}

impl Sandbox {
    /// Node `i`'s configuration: ports P+i and P+offset+i, the sandbox's ledger settings, the members (with their
    /// encryption keys) and the recovery threshold, and for a joiner node 0 as its target.
    fn node_config(&self, i: usize, launch: Launch) -> NodeConfig {
        let (args, ws) = (&self.args, &self.ws);
        let mut cfg = NodeConfig::default();
        cfg.network.rpc_address = format!("127.0.0.1:{}", args.port as usize + i);
        cfg.network.node_to_node_address = Some(format!(
            "127.0.0.1:{}",
            args.port as usize + NODE_TO_NODE_PORT_OFFSET + i
        ));
        cfg.ledger.signature_interval_tx = args.signature_interval_tx;
        cfg.ledger.signature_interval_ms = args.signature_interval_ms;
        cfg.ledger.snapshot_tx_interval = args.snapshot_interval_tx;
        cfg.start.members = (0..args.recovery_members)
            .map(|m| IdentityConfig {
                cert: ws.join(format!("member{m}_cert.pem")),
                encryption_public_key: Some(ws.join(format!("member{m}_enc_pubk.pem"))),
                data: None,
            })
            .collect();
        // Validated: at most MAX_SANDBOX_RECOVERY_MEMBERS.
        cfg.start.recovery_threshold = u32::try_from(args.recovery_threshold).unwrap_or(u32::MAX);
        if launch == Launch::Join {
            cfg.join.target = Some(self.address.clone());
            cfg.join.service_cert = Some(ws.join("service_cert.pem"));
        }
        // user0 is added, and the service opened, by a proposal of member0 once every node joined.
        cfg
    }

    /// Writes node `i`'s configuration and starts it; returns its `sandbox.json` entry (node id filled in later).
    fn start_node(&self, i: usize, launch: Launch, children: &mut Children) -> Result<serde_json::Value, CliError> {
        let dir = self.ws.join("nodes").join(i.to_string());
        std::fs::create_dir_all(&dir).map_err(CliError::file(&dir))?;
        let cfg = self.node_config(i, launch);
        let cfg_path = dir.join("node.toml");
        write(&cfg_path, &cfg.to_toml())?;
        let log = |name: &str| std::fs::File::create(dir.join(name)).map_err(CliError::file(dir.join(name)));
        let (out, err) = (log("out.log")?, log("err.log")?);
        let mut command = Command::new(&self.exe);
        if std::env::var_os(crate::ALLOCATOR_PURGE_DELAY_VAR).is_none() {
            // What the node would otherwise re-execute itself to get (see main.rs).
            command.env(crate::ALLOCATOR_PURGE_DELAY_VAR, crate::NODE_ALLOCATOR_PURGE_DELAY_MS);
        }
        let child = command
            .args(["node", launch.verb(), "--config"])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| CliError::SpawnNode { node: i, source })?;
        let entry = serde_json::json!({
            "node_id": serde_json::Value::Null,
            "rpc_address": cfg.network.rpc_address,
            "pid": child.id(),
            "dir": dir,
        });
        children.0.push(child);
        Ok(entry)
    }

    /// Waits for node 0 to write the service certificate, and copies it into the workspace for the joiners.
    async fn wait_for_service_cert(&self, children: &mut Children) -> Result<(), CliError> {
        loop {
            if Instant::now() > self.deadline {
                return Err(CliError::NodeDidNotStart {
                    dir: self.node0.clone(),
                });
            }
            children.check_node0(&self.node0)?;
            if let Ok(cert) = std::fs::read_to_string(self.node0.join("service_cert.pem")) {
                return write(&self.ws.join("service_cert.pem"), &cert);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for every node to be a voter, then member0 proposes to add user0 and open the service (the members
    /// vote for it until a majority has), and waits until it is Open. Returns the service certificate.
    async fn wait_until_open(&self, children: &mut Children) -> Result<String, CliError> {
        loop {
            if Instant::now() > self.deadline {
                return Err(CliError::ServiceNotOpen {
                    dir: self.node0.clone(),
                });
            }
            children.check_node0(&self.node0)?;
            self.trust_joiners().await;
            if voters(&self.node0, &self.address).await >= self.args.nodes {
                if let Some((service_cert, _primary)) = poll_open(&self.node0, &self.address, &self.ws).await {
                    return Ok(service_cert);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Sandbox {
    /// member0 trusts the sandbox's own joiners once they are Pending (a joiner on the virtual platform is never
    /// trusted automatically: anyone can make its evidence). Each names itself in its directory's
    /// `joining_node_id`; nodes the sandbox did not start are left Pending.
    async fn trust_joiners(&self) {
        let Ok(cert) = std::fs::read_to_string(self.node0.join("service_cert.pem")) else {
            return;
        };
        let Ok(tls) = consort_node::net::tls::client_config(&cert, None) else {
            return;
        };
        let Ok(conn) = Connection::connect(&self.address, tls, Protocol::Http1).await else {
            return;
        };
        let Some(nodes) = conn.get("/node/network/nodes").await.ok().and_then(|r| r.json().ok()) else {
            return;
        };
        for i in 1..self.args.nodes {
            if let Some(id) = pending_joiner(&self.ws.join("nodes").join(i.to_string()), &nodes) {
                let actions = serde_json::json!([
                    {"name": "transition_node_to_trusted", "args": {"node_id": id}},
                ]);
                if let Err(e) = pass_as_members(&conn, &self.ws, actions).await {
                    eprintln!("trusting node {i}: {e}");
                }
            }
        }
    }
}

/// Number of voters node 0 (the primary until the service opens) reports.
pub(crate) async fn voters(node_dir: &Path, address: &str) -> usize {
    let Ok(cert) = std::fs::read_to_string(node_dir.join("service_cert.pem")) else {
        return 0;
    };
    let Ok(tls) = consort_node::net::tls::client_config(&cert, None) else {
        return 0;
    };
    let Ok(conn) = Connection::connect(address, tls, Protocol::Http1).await else {
        return 0;
    };
    let Ok(reply) = conn.get("/node/consensus").await else {
        return 0;
    };
    let Ok(v) = reply.json() else { return 0 };
    v["peers"]
        .as_object()
        .map(|p| p.values().filter(|x| x["voter"] == true).count())
        .unwrap_or(0)
}

/// Returns (service certificate PEM, primary node id) once node 0 reports the service Open; proposes to open it
/// (and add user0) when it is still Opening.
pub(crate) async fn poll_open(node_dir: &Path, address: &str, ws: &Path) -> Option<(String, String)> {
    let cert = std::fs::read_to_string(node_dir.join("service_cert.pem")).ok()?;
    let tls = consort_node::net::tls::client_config(&cert, None).ok()?;
    let conn = Connection::connect(address, tls, Protocol::Http1).await.ok()?;
    let net = conn.get("/node/network").await.ok()?.json().ok()?;
    match net["service_status"].as_str() {
        Some("Open") => Some((cert, net["primary_id"].as_str()?.to_string())),
        Some("Opening") => {
            if let Err(e) = open_by_proposal(&conn, ws, &cert).await {
                eprintln!("opening the service: {e}");
            }
            None
        }
        _ => None,
    }
}

/// member0 proposes `set_user(user0)` and `transition_service_to_open`.
async fn open_by_proposal(conn: &Connection, ws: &Path, service_cert: &str) -> Result<(), CliError> {
    let read = |f: &str| std::fs::read_to_string(ws.join(f)).map_err(CliError::file(ws.join(f)));
    let actions = serde_json::json!([
        {"name": "set_user", "args": {"cert": read("user0_cert.pem")?}},
        {"name": "transition_service_to_open", "args": {"next_service_identity": service_cert}},
    ]);
    pass_as_members(conn, ws, actions).await
}

/// member0 proposes `actions`, and the workspace's members (member0, member1, ... while their files exist) vote
/// for them in turn until the proposal is accepted (by the default constitution, once a majority has voted).
pub(crate) async fn pass_as_members(conn: &Connection, ws: &Path, actions: serde_json::Value) -> Result<(), CliError> {
    let read = |f: &str| std::fs::read_to_string(ws.join(f)).map_err(CliError::file(ws.join(f)));
    let member0 = crate::gov::Member::load(&read("member0_cert.pem")?, &read("member0_privk.pem")?)?;
    let proposal = serde_json::json!({ "actions": actions });
    let body = member0.sign(consort_gov::MsgType::Proposal, None, proposal.to_string().as_bytes());
    let r = crate::gov::post_cose(conn, "/gov/members/proposals:create", body).await?;
    let mut v = r.json()?;
    if r.status != 200 {
        return Err(CliError::ProposalRefused {
            status: r.status,
            body: v,
        });
    }
    let id = v["proposalId"].as_str().ok_or(CliError::NoProposalId)?.to_string();
    let mut voter = 0;
    while v["proposalState"] == "Open" && ws.join(format!("member{voter}_cert.pem")).exists() {
        let cert = read(&format!("member{voter}_cert.pem"))?;
        let member = crate::gov::Member::load(&cert, &read(&format!("member{voter}_privk.pem"))?)?;
        let ballot = serde_json::json!({"ballot": crate::gov::ACCEPT_BALLOT});
        let body = member.sign(consort_gov::MsgType::Ballot, Some(&id), ballot.to_string().as_bytes());
        let path = format!("/gov/members/proposals/{id}/ballots/{}:submit", member.id);
        let r = crate::gov::post_cose(conn, &path, body).await?;
        v = r.json()?;
        voter += 1;
    }
    if v["proposalState"] != "Accepted" {
        return Err(CliError::ProposalNotAccepted(v));
    }
    Ok(())
}

/// Runs until SIGINT/SIGTERM, or until every node has exited.
async fn wait_until_stopped(children: &mut Children) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if children.0.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                    eprintln!("all nodes have exited");
                    return;
                }
            }
        }
    }
}

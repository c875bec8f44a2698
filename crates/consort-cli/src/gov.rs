//! `consort gov`: member tooling. Signs governance requests (COSE Sign1 with the member's PEM key and
//! certificate) and sends them to a node's `/gov` endpoints (CCF's 2024-07-01 API).

use consort_crypto::{ParsedCert, SigningKey};
use consort_gov::MsgType;
use consort_node::client::{Connection, Protocol, Reply};
use std::path::PathBuf;

/// CCF's governance API version, sent as `api-version`.
pub const GOV_API_VERSION: &str = "2024-07-01";

#[derive(clap::Args, Debug)]
pub struct GovArgs {
    /// Node address (host:port); defaults to the sandbox's first node.
    #[arg(long)]
    pub address: Option<String>,
    /// Service certificate (PEM); defaults to the sandbox's.
    #[arg(long)]
    pub service_cert: Option<PathBuf>,
    /// Member certificate (PEM); defaults to the sandbox's member0.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Member private key (PEM); defaults to the sandbox's member0.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Sandbox workspace used for the defaults.
    #[arg(long, default_value = "workspace/sandbox")]
    pub workspace: PathBuf,
    #[command(subcommand)]
    pub cmd: GovCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum GovCmd {
    /// Submit a proposal (a JSON file with {"actions": [...]}).
    Propose { proposal: PathBuf },
    /// Vote on a proposal: `--accept`, `--reject`, or `--ballot FILE` with a JS module exporting vote().
    Vote {
        proposal_id: String,
        #[arg(long, conflicts_with_all = ["reject", "ballot"])]
        accept: bool,
        #[arg(long, conflicts_with = "ballot")]
        reject: bool,
        #[arg(long)]
        ballot: Option<PathBuf>,
    },
    /// Withdraw one of your proposals.
    Withdraw { proposal_id: String },
    /// List proposals.
    List,
    /// Show one proposal.
    Show { proposal_id: String },
    /// Acknowledge the current state digest (activates an Accepted member).
    Ack,
}

fn read(p: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn print(r: &Reply) -> Result<(), String> {
    let text = String::from_utf8_lossy(&r.body);
    match serde_json::from_slice::<serde_json::Value>(&r.body) {
        Ok(v) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_string())
        ),
        Err(_) => println!("{text}"),
    }
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        Err(format!("HTTP {}", r.status))
    }
}

/// A member identity able to sign governance requests.
pub struct Member {
    pub id: String,
    pub key: SigningKey,
}

impl Member {
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let cert = ParsedCert::from_pem(cert_pem).map_err(|e| e.to_string())?;
        let key = SigningKey::from_pem(key_pem).map_err(|e| e.to_string())?;
        if cert.public_key().ok() != Some(key.verifying_key()) {
            return Err("member key does not match member certificate".into());
        }
        Ok(Member {
            id: cert.cert_id(),
            key,
        })
    }

    pub fn sign(&self, t: MsgType, proposal_id: Option<&str>, payload: &[u8]) -> Vec<u8> {
        consort_gov::sign_gov_request(&self.key, &self.id, t, now(), proposal_id, payload)
    }
}

/// Posts a signed body to `path` (with the API version).
pub async fn post_cose(conn: &Connection, path: &str, body: Vec<u8>) -> Result<Reply, String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    conn.request_typed(
        "POST",
        &format!("{path}{sep}api-version={GOV_API_VERSION}"),
        Some(("application/cose", body)),
    )
    .await
    .map_err(|e| e.to_string())
}

pub async fn run(args: GovArgs) -> Result<(), String> {
    let ws = &args.workspace;
    let service_cert = read(&args.service_cert.clone().unwrap_or_else(|| ws.join("service_cert.pem")))?;
    let cert = read(&args.cert.clone().unwrap_or_else(|| ws.join("member0_cert.pem")))?;
    let key = read(&args.key.clone().unwrap_or_else(|| ws.join("member0_privk.pem")))?;
    let address = match &args.address {
        Some(a) => a.clone(),
        None => {
            let sb: serde_json::Value =
                serde_json::from_str(&read(&ws.join("sandbox.json"))?).map_err(|e| e.to_string())?;
            sb["nodes"][0]["rpc_address"]
                .as_str()
                .ok_or("sandbox.json has no nodes")?
                .to_string()
        }
    };
    let member = Member::load(&cert, &key)?;
    let tls = consort_node::tls::client_config(&service_cert, None).map_err(|e| e.to_string())?;
    let conn = Connection::connect(&address, tls, Protocol::Http1)
        .await
        .map_err(|e| e.to_string())?;
    let v = GOV_API_VERSION;
    match args.cmd {
        GovCmd::Propose { proposal } => {
            let body = member.sign(MsgType::Proposal, None, read(&proposal)?.as_bytes());
            print(&post_cose(&conn, "/gov/members/proposals:create", body).await?)
        }
        GovCmd::Vote {
            proposal_id,
            accept,
            reject,
            ballot,
        } => {
            let script = match (accept, reject, ballot) {
                (true, _, _) => "export function vote (proposal, proposerId) { return true }".to_string(),
                (_, true, _) => "export function vote (proposal, proposerId) { return false }".to_string(),
                (_, _, Some(f)) => read(&f)?,
                _ => return Err("give --accept, --reject or --ballot FILE".into()),
            };
            let payload = serde_json::json!({ "ballot": script }).to_string();
            let body = member.sign(MsgType::Ballot, Some(&proposal_id), payload.as_bytes());
            let path = format!("/gov/members/proposals/{proposal_id}/ballots/{}:submit", member.id);
            print(&post_cose(&conn, &path, body).await?)
        }
        GovCmd::Withdraw { proposal_id } => {
            let body = member.sign(MsgType::Withdrawal, Some(&proposal_id), b"");
            print(&post_cose(&conn, &format!("/gov/members/proposals/{proposal_id}:withdraw"), body).await?)
        }
        GovCmd::List => print(
            &conn
                .get(&format!("/gov/members/proposals?api-version={v}"))
                .await
                .map_err(|e| e.to_string())?,
        ),
        GovCmd::Show { proposal_id } => print(
            &conn
                .get(&format!("/gov/members/proposals/{proposal_id}?api-version={v}"))
                .await
                .map_err(|e| e.to_string())?,
        ),
        GovCmd::Ack => {
            let update = member.sign(MsgType::StateDigest, None, b"");
            let r = post_cose(
                &conn,
                &format!("/gov/members/state-digests/{}:update", member.id),
                update,
            )
            .await?;
            if r.status != 200 {
                return print(&r);
            }
            let body = member.sign(MsgType::Ack, None, &r.body);
            print(&post_cose(&conn, &format!("/gov/members/state-digests/{}:ack", member.id), body).await?)
        }
    }
}

//! `consort gov`: member tooling. Signs governance requests (COSE Sign1 with the member's PEM key and
//! certificate) and sends them to a node's `/gov` endpoints (CCF's 2024-07-01 API).

use crate::error::CliError;
use consort_crypto::{ParsedCert, SigningKey};
use consort_gov::MsgType;
use consort_node::net::client::{Connection, Protocol, Reply};
use std::path::{Path, PathBuf};

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
    /// Offline: build the `set_js_app` proposal for the JavaScript app in DIR (`app.json` with its endpoints, and
    /// the modules under `DIR/src`) and write it to OUT (default: stdout). Submit it with `propose`.
    JsAppProposal {
        #[arg(long, value_name = "DIR")]
        app_dir: PathBuf,
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Disaster recovery, member side: fetch your encrypted recovery share, decrypt it with your RSA encryption
    /// key, sign it and submit it to the recovering node.
    RecoveryShare {
        /// Your RSA encryption private key (PEM). Defaults to `<name>_enc_privk.pem` beside the member
        /// certificate `<name>_cert.pem`.
        #[arg(long, value_name = "FILE")]
        member_enc_privk: Option<PathBuf>,
        /// Only fetch and decrypt the share (check that your key opens it); submit nothing.
        #[arg(long)]
        check_only: bool,
    },
}

/// The ballot that votes for any proposal.
pub const ACCEPT_BALLOT: &str = "export function vote (proposal, proposerId) { return true }";

/// How a member votes: the ballot script is the constitution's `vote(proposal, proposerId)`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ballot {
    Accept,
    Reject,
    /// A JS module exporting vote(), from this file.
    Script(PathBuf),
}

impl Ballot {
    /// The ballot the `vote` flags ask for (clap lets at most one through).
    fn from_flags(accept: bool, reject: bool, script: Option<PathBuf>) -> Result<Ballot, CliError> {
        match (accept, reject, script) {
            (true, _, _) => Ok(Ballot::Accept),
            (_, true, _) => Ok(Ballot::Reject),
            (_, _, Some(f)) => Ok(Ballot::Script(f)),
            _ => Err(CliError::NoBallot),
        }
    }

    fn script(&self) -> Result<String, CliError> {
        match self {
            Ballot::Accept => Ok(ACCEPT_BALLOT.to_string()),
            Ballot::Reject => Ok("export function vote (proposal, proposerId) { return false }".to_string()),
            Ballot::Script(f) => read(f),
        }
    }
}

fn read(p: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(p).map_err(CliError::file(p))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn print(r: &Reply) -> Result<(), CliError> {
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
        Err(CliError::HttpStatus(r.status))
    }
}

/// A member identity able to sign governance requests.
pub struct Member {
    pub id: String,
    pub key: SigningKey,
}

impl Member {
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, CliError> {
        let cert = ParsedCert::from_pem(cert_pem)?;
        let key = SigningKey::from_pem(key_pem)?;
        if cert.public_key().ok() != Some(key.verifying_key()) {
            return Err(CliError::MemberKeyMismatch);
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
pub async fn post_cose(conn: &Connection, path: &str, body: Vec<u8>) -> Result<Reply, CliError> {
    let sep = if path.contains('?') { '&' } else { '?' };
    Ok(conn
        .request_typed(
            "POST",
            &format!("{path}{sep}api-version={GOV_API_VERSION}"),
            Some(("application/cose", body)),
        )
        .await?)
}

/// The node address: `--address`, or the sandbox's first node.
fn address(args: &GovArgs) -> Result<String, CliError> {
    if let Some(a) = &args.address {
        return Ok(a.clone());
    }
    let sandbox: serde_json::Value = serde_json::from_str(&read(&args.workspace.join("sandbox.json"))?)?;
    Ok(sandbox["nodes"][0]["rpc_address"]
        .as_str()
        .ok_or(CliError::NoSandboxNodes)?
        .to_string())
}

/// The member's encryption key file: `--member-enc-privk`, or `<name>_enc_privk.pem` beside `<name>_cert.pem`.
fn encryption_key_path(given: Option<PathBuf>, cert: &Path) -> Result<PathBuf, CliError> {
    if let Some(p) = given {
        return Ok(p);
    }
    let name = cert.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match name.strip_suffix("_cert.pem") {
        Some(stem) if !stem.is_empty() => Ok(cert.with_file_name(format!("{stem}_enc_privk.pem"))),
        _ => Err(CliError::NoEncryptionKey(cert.to_path_buf())),
    }
}

/// `consort gov recovery-share`: fetch, decrypt, and (unless `check_only`) sign and submit; prints the node's
/// answer.
async fn recovery_share(
    conn: &Connection,
    member: &Member,
    enc_key_path: &Path,
    check_only: bool,
) -> Result<(), CliError> {
    use consort_cli::recovery_share as rs;
    let enc_key = read(enc_key_path)?;
    let share = rs::fetch_and_decrypt(conn, &member.id, &enc_key).await?;
    if check_only {
        println!(
            "the recovery share of member {} decrypts with {} ({} bytes); nothing submitted",
            member.id,
            enc_key_path.display(),
            share.len()
        );
        return Ok(());
    }
    let signed = rs::sign_share(&member.key, &member.id, &share, now());
    let reply = rs::submit_share(conn, &member.id, signed).await?;
    match reply
        .json()
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
    {
        Some(message) => println!("{message}"),
        None => print(&reply)?,
    }
    Ok(())
}

pub async fn run(args: GovArgs) -> Result<(), CliError> {
    if let GovCmd::JsAppProposal { app_dir, out } = &args.cmd {
        let bundle = consort_cli::js_bundle::bundle_from_dir(app_dir)?;
        let proposal = consort_cli::js_bundle::set_js_app_proposal(bundle).to_string();
        match out {
            Some(path) => std::fs::write(path, proposal).map_err(|source| CliError::File {
                path: path.clone(),
                source,
            })?,
            None => println!("{proposal}"),
        }
        return Ok(());
    }
    let ws = &args.workspace;
    let service_cert = read(&args.service_cert.clone().unwrap_or_else(|| ws.join("service_cert.pem")))?;
    let cert_path = args.cert.clone().unwrap_or_else(|| ws.join("member0_cert.pem"));
    let cert = read(&cert_path)?;
    let key = read(&args.key.clone().unwrap_or_else(|| ws.join("member0_privk.pem")))?;
    let address = address(&args)?;
    let member = Member::load(&cert, &key)?;
    let tls = consort_node::net::tls::client_config(&service_cert, None)?;
    let conn = Connection::connect(&address, tls, Protocol::Http1).await?;
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
            let script = Ballot::from_flags(accept, reject, ballot)?.script()?;
            let payload = serde_json::json!({ "ballot": script }).to_string();
            let body = member.sign(MsgType::Ballot, Some(&proposal_id), payload.as_bytes());
            let path = format!("/gov/members/proposals/{proposal_id}/ballots/{}:submit", member.id);
            print(&post_cose(&conn, &path, body).await?)
        }
        GovCmd::Withdraw { proposal_id } => {
            let body = member.sign(MsgType::Withdrawal, Some(&proposal_id), b"");
            print(&post_cose(&conn, &format!("/gov/members/proposals/{proposal_id}:withdraw"), body).await?)
        }
        GovCmd::List => print(&conn.get(&format!("/gov/members/proposals?api-version={v}")).await?),
        GovCmd::Show { proposal_id } => print(
            &conn
                .get(&format!("/gov/members/proposals/{proposal_id}?api-version={v}"))
                .await?,
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
        GovCmd::JsAppProposal { .. } => Ok(()),
        GovCmd::RecoveryShare {
            member_enc_privk,
            check_only,
        } => {
            let enc_key = encryption_key_path(member_enc_privk, &cert_path)?;
            recovery_share(&conn, &member, &enc_key, check_only).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_flags_choose_one_ballot() {
        assert_eq!(Ballot::from_flags(true, false, None).unwrap(), Ballot::Accept);
        assert_eq!(Ballot::from_flags(false, true, None).unwrap(), Ballot::Reject);
        let file = PathBuf::from("ballot.js");
        assert_eq!(
            Ballot::from_flags(false, false, Some(file.clone())).unwrap(),
            Ballot::Script(file)
        );
        let none = Ballot::from_flags(false, false, None).unwrap_err();
        assert_eq!(none.to_string(), "give --accept, --reject or --ballot FILE");
        assert!(Ballot::Accept.script().unwrap().contains("return true"));
        assert!(Ballot::Reject.script().unwrap().contains("return false"));
    }

    #[test]
    fn the_encryption_key_defaults_to_the_one_beside_the_member_certificate() {
        let ws = PathBuf::from("/ws");
        assert_eq!(
            encryption_key_path(None, &ws.join("member2_cert.pem")).unwrap(),
            ws.join("member2_enc_privk.pem")
        );
        let given = PathBuf::from("/keys/mine.pem");
        assert_eq!(
            encryption_key_path(Some(given.clone()), &ws.join("member2_cert.pem")).unwrap(),
            given
        );
        let err = encryption_key_path(None, &ws.join("alice.pem")).unwrap_err();
        assert!(err.to_string().contains("--member-enc-privk"), "{err}");
    }
}

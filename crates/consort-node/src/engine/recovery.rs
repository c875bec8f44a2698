//! Disaster recovery on the node: a new service started on a copy of an old ledger (`consort node recover`).
//!
//! 1. [`prepare_old_ledger`] finds the old ledger's last signature transaction (the *recovery base*) and drops the
//!    unsigned entries after it; the node saves a sealed [`RecoveryRecord`] naming the base, creates a new
//!    identity whose ledger secret starts after the base, and opens its replica in recovery mode (public replay,
//!    see `consort_consensus::RecoveryBase`).
//! 2. [`Engine::write_recovery_tx`]: the service table names the new service certificate with status
//!    `Recovering`, the previous identity is recorded with an endorsement by the new one (so receipts of old
//!    transactions still verify), the old nodes are retired and this node is Trusted.
//! 3. Members open it (`transition_service_to_open` with the previous and next identities: status
//!    `WaitingForRecoveryShares`) and submit their decrypted shares ([`submit_share`]), kept in a private table.
//! 4. At the threshold, [`Engine::start_private_restore`] restores the old latest secret from the shares, the older
//!    ones along the chain, replays the old private domains (progress in the log), merges them, and opens the
//!    service: the previous secret is chained under the new one, fresh shares are issued.

use super::{Engine, EngineError, WriteError};
use crate::identity::{read_sealed_text, write_sealed, IdentityError};
use base64::Engine as _;
use consort_attest::Platform;
use consort_consensus::{PrivateRestore, RecoveryBase};
use consort_gov::tables::SERVICE_CONFIG;
use consort_gov::{GovError, MsgType};
use consort_kv::{Tx, WriteSet};
use consort_ledger::secrets::chain::{self, HistoricalWrite};
use consort_ledger::secrets::shares::{self, RecoverySharesInfo, RECOVERY_SHARES_TABLE};
use consort_ledger::secrets::{
    HistoricalLedgerSecret, PreviousLedgerSecret, ENCRYPTED_LEDGER_SECRETS_TABLE,
    HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE,
};
use consort_ledger::{
    parse_entry, Ledger, LedgerSecret, LedgerSecrets, NODES_INFO_TABLE, SERVICE_INFO_TABLE, SIGNATURES_TABLE,
    SINGLETON_KEY,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The sealed file in the secrets directory that makes every start of a recovered node continue the recovery.
pub const RECOVERY_RECORD_FILE: &str = "recovery_record";
/// The service's previous identities, each with its certificate re-issued by its successor (Consort's table; JSON
/// list of [`PreviousIdentity`] at the singleton key, oldest first).
pub const PREVIOUS_IDENTITIES_TABLE: &str = "public:ccf.internal.previous_service_identities";
/// The recovery shares members submitted, by member id (private: the host sees them only encrypted).
pub const SUBMITTED_SHARES_TABLE: &str = "ccf.internal.submitted_recovery_shares";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a recovered node keeps (sealed) to continue its recovery on every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    /// The old ledger's last signature transaction.
    pub base_seqno: u64,
    /// The node that recovered: a record copied onto another node (which would then start Raft alone from the
    /// base, a fork) is refused.
    pub node_id: String,
    /// Hex SHA-256 of the recovered service's certificate (PEM text, trimmed).
    pub service_cert_sha256: String,
}

impl RecoveryRecord {
    /// The record of a recovery by the node with identities `ids` from `base_seqno`.
    pub fn new(base_seqno: u64, ids: &crate::identity::Identities) -> Self {
        RecoveryRecord {
            base_seqno,
            node_id: ids.node_id.to_string(),
            service_cert_sha256: cert_digest(&ids.service_cert_pem),
        }
    }

    /// Whether this record was written by the node with identities `ids`.
    pub fn is_for(&self, ids: &crate::identity::Identities) -> bool {
        self.node_id == ids.node_id.as_str() && self.service_cert_sha256 == cert_digest(&ids.service_cert_pem)
    }
}

fn cert_digest(pem: &str) -> String {
    hex::encode(consort_crypto::sha256(pem.trim().as_bytes()))
}

/// One previous identity of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousIdentity {
    /// The previous service certificate (PEM).
    pub cert: String,
    /// The same subject and key, certified by the next service key: the endorsement a receipt of a transaction of
    /// the previous service carries in `service_endorsements`.
    pub endorsed_cert: String,
    /// The last seqno of the previous service (the recovery base).
    pub last_seqno: u64,
}

/// Where a recovery stands, for `/node/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage")]
pub enum RecoveryStage {
    /// Waiting for members to open the service and submit their shares.
    WaitingForShares,
    /// Replaying the old private domains (the last seqno read).
    ReadingPrivateLedger {
        /// Last old seqno read so far.
        read_seqno: u64,
    },
    /// The restore failed (the service keeps waiting; members may submit other shares).
    Failed {
        /// Why.
        error: String,
    },
    /// The old private state is back and the service is open.
    Complete,
}

/// Why a recovery could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The old ledger could not be read or cut at its last signature.
    #[error("old ledger {}: {source}", dir.display())]
    OldLedger {
        /// Its directory.
        dir: std::path::PathBuf,
        /// The cause.
        #[source]
        source: consort_ledger::LedgerError,
    },
    /// The old ledger holds no signature transaction, or does not start at seqno 1.
    #[error("old ledger {}: {reason}", dir.display())]
    Unusable {
        /// Its directory.
        dir: std::path::PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The recovery record could not be read or written.
    #[error("recovery record: {0}")]
    Record(#[source] IdentityError),
    /// The recovery record does not parse.
    #[error("recovery record: {0}")]
    RecordFormat(String),
    /// The recovery record was written by another node or for another service: refused (it would make this node
    /// start Raft alone from an old base).
    #[error("recovery record {} was not written by this node for this service", path.display())]
    RecordNotOurs {
        /// The record.
        path: std::path::PathBuf,
    },
    /// The old service's tables are not what a recovery needs.
    #[error("the old service's {0}")]
    OldService(String),
    /// Replaying the old ledger failed, and an audit of its chunk files names the damaged transaction.
    #[error("the old ledger is damaged: {finding} (replay stopped with: {source})")]
    Damaged {
        /// The audit's finding: the transaction, its chunk file and what is wrong.
        finding: String,
        /// What replay found.
        #[source]
        source: Box<EngineError>,
    },
}

/// Explains a failed start over an old ledger: a signature that no longer matches (an entry changed after it was
/// signed, for instance a flipped byte in a private domain the recovering node cannot read) names only the
/// signature; the audit of the chunk files names the changed transaction itself. Other errors pass through.
pub fn explain_replay_failure(ledger_dir: &Path, error: EngineError) -> EngineError {
    use consort_consensus::ConsensusError::BadSignature;
    let replay: &consort_consensus::ConsensusError = match &error {
        EngineError::Consensus(e) => e,
        EngineError::DamagedEntry { source, .. } => source,
        _ => return error,
    };
    if !matches!(replay, BadSignature { .. }) {
        return error;
    }
    let mut chunks = Vec::new();
    for entry in std::fs::read_dir(ledger_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if consort_ledger::parse_chunk_name(&name).is_some() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                chunks.push((name, bytes));
            }
        }
    }
    match consort_ledger::audit_chunks(&chunks) {
        Err(finding) => EngineError::Recovery(RecoveryError::Damaged {
            finding: finding.to_string(),
            source: Box::new(error),
        }),
        Ok(_) => error,
    }
}

/// Finds the last signature transaction of the ledger in `dir` (which must start at seqno 1) and removes the
/// entries after it: they were never covered by a signature, so never committed. Returns the base.
pub fn prepare_old_ledger(dir: &Path, chunk_threshold_bytes: u64) -> Result<u64, RecoveryError> {
    let old = |source| RecoveryError::OldLedger {
        dir: dir.to_path_buf(),
        source,
    };
    let unusable = |reason: String| RecoveryError::Unusable {
        dir: dir.to_path_buf(),
        reason,
    };
    let storage = super::storage::FsStorage::new(dir).map_err(|e| unusable(e.to_string()))?;
    let mut ledger = Ledger::load(storage, chunk_threshold_bytes).map_err(old)?;
    match ledger.first_seqno() {
        Some(1) => {}
        Some(first) => {
            return Err(unusable(format!(
                "it starts at seqno {first}; recovery needs it from seqno 1"
            )))
        }
        None => return Err(unusable("it holds no ledger entries".into())),
    }
    let mut seqno = ledger.last_seqno();
    while seqno >= 1 {
        let bytes = ledger.read_entry(seqno).map_err(old)?;
        let is_signature = parse_entry(&bytes)
            .ok()
            .and_then(|(e, _)| WriteSet::deserialise_public(e.public_domain).ok())
            .is_some_and(|(_, ws)| ws.maps.contains_key(SIGNATURES_TABLE));
        if is_signature {
            break;
        }
        seqno -= 1;
    }
    if seqno == 0 {
        return Err(unusable("it holds no signature transaction".into()));
    }
    if seqno < ledger.last_seqno() {
        tracing::warn!(
            base = seqno,
            dropped = ledger.last_seqno() - seqno,
            "recovery: entries after the last signature transaction are dropped"
        );
        ledger.truncate(seqno).map_err(old)?;
        ledger.flush().map_err(old)?;
    }
    Ok(seqno)
}

/// Saves the record, sealed.
pub fn save_record(platform: &dyn Platform, dir: &Path, record: &RecoveryRecord) -> Result<(), RecoveryError> {
    let text = serde_json::to_string(record).unwrap_or_default();
    write_sealed(platform, &dir.join(RECOVERY_RECORD_FILE), text.as_bytes()).map_err(RecoveryError::Record)
}

/// The record, if this node is a recovered one.
pub fn load_record(platform: &dyn Platform, dir: &Path) -> Result<Option<RecoveryRecord>, RecoveryError> {
    let path = dir.join(RECOVERY_RECORD_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = read_sealed_text(platform, &path).map_err(RecoveryError::Record)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RecoveryError::RecordFormat(e.to_string()))
}

/// This node's recovery record, if it recovered a service; one another node wrote, or for another service, is
/// refused. Without a platform (tests) there is none.
pub(super) fn our_record(
    cfg: &crate::config::NodeConfig,
    ids: &crate::identity::Identities,
    platform: Option<&dyn Platform>,
) -> Result<Option<RecoveryRecord>, RecoveryError> {
    let Some(platform) = platform else { return Ok(None) };
    let record = load_record(platform, &cfg.storage.secrets_dir)?;
    if record.as_ref().is_some_and(|r| !r.is_for(ids)) {
        let path = cfg.storage.secrets_dir.join(RECOVERY_RECORD_FILE);
        return Err(RecoveryError::RecordNotOurs { path });
    }
    Ok(record)
}

/// The keyring of a recovered service: its first secret, from the seqno after the base.
pub fn recovered_keyring(base: u64, fresh: &LedgerSecrets) -> LedgerSecrets {
    let secret = fresh.latest().1.clone();
    LedgerSecrets::from_versions([(base + 1, secret.clone())]).unwrap_or_else(|| LedgerSecrets::new(secret))
}

/// The base the replica starts from, from the record.
pub fn base_of(record: Option<&RecoveryRecord>) -> Option<RecoveryBase> {
    record.map(|r| RecoveryBase { seqno: r.base_seqno })
}

fn json_of(tx: &mut Tx<'_>, table: &str, key: &[u8]) -> Option<serde_json::Value> {
    tx.get(table, key).and_then(|raw| serde_json::from_slice(&raw).ok())
}

/// The previous identities recorded so far.
pub fn previous_identities(read: &consort_kv::ReadTx<'_>) -> Vec<PreviousIdentity> {
    read.get(PREVIOUS_IDENTITIES_TABLE, &SINGLETON_KEY)
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default()
}

/// `service_endorsements` for a receipt of transaction `seqno`: the chain from the identity that was current
/// then to the current one (nearest to the node first); empty for a transaction of the current service.
pub fn endorsements_for(previous: &[PreviousIdentity], seqno: u64) -> Vec<String> {
    previous
        .iter()
        .filter(|p| seqno <= p.last_seqno)
        .map(|p| p.endorsed_cert.clone())
        .collect()
}

impl Engine {
    /// The recovery transaction, written once by a node that `consort node recover` started: the new service
    /// certificate with status `Recovering`, the previous identity endorsed, the old nodes retired, this node
    /// Trusted.
    pub(super) fn write_recovery_tx(&self, base: u64) -> Result<(), EngineError> {
        let old = |what: &str| EngineError::Recovery(RecoveryError::OldService(what.to_string()));
        let outcome = self.execute_write(|tx, _| -> Result<(), EngineError> {
            let info = json_of(tx, SERVICE_INFO_TABLE, &SINGLETON_KEY).ok_or_else(|| old("service table is empty"))?;
            let old_cert = info["cert"]
                .as_str()
                .ok_or_else(|| old("service table has no certificate"))?
                .to_string();
            let endorsed = self.endorse_previous(&old_cert).map_err(|e| old(&e))?;
            let mut previous: Vec<PreviousIdentity> = json_of(tx, PREVIOUS_IDENTITIES_TABLE, &SINGLETON_KEY)
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            previous.push(PreviousIdentity {
                cert: old_cert,
                endorsed_cert: endorsed,
                last_seqno: base,
            });
            tx.put(
                PREVIOUS_IDENTITIES_TABLE,
                &SINGLETON_KEY,
                &serde_json::to_vec(&previous).unwrap_or_default(),
            );
            let count = info["recovery_count"].as_u64().unwrap_or(0).saturating_add(1);
            let next = self.current_txid();
            let service = serde_json::json!({
                "cert": self.ids.service_cert_pem,
                "status": "Recovering",
                "recovery_count": count,
                "previous_service_identity_version": base,
                "current_service_create_txid": format!("{}.{}", next.view.get().max(1), next.seqno.get() + 1),
            });
            tx.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, service.to_string().as_bytes());
            self.retire_old_nodes(tx);
            self.record_self_as_trusted(tx, None);
            Ok(())
        });
        match outcome {
            Ok(_) => Ok(()),
            Err(WriteError::Body(e)) => Err(e),
            Err(other) => Err(old(&format!("recovery transaction not written: {other:?}"))),
        }
    }

    /// `old_cert` (PEM) re-issued with the same subject and key by this service's key.
    fn endorse_previous(&self, old_cert: &str) -> Result<String, String> {
        use consort_crypto::x509::{self, CertParams};
        let parsed = consort_crypto::ParsedCert::from_pem(old_cert).map_err(|e| e.to_string())?;
        let key = parsed.public_key().map_err(|e| e.to_string())?;
        let mut params = CertParams::new("CCF Service");
        params.is_ca = true;
        params.validity_days = crate::identity::CERT_VALIDITY_DAYS;
        let service_der = consort_crypto::ParsedCert::from_pem(&self.ids.service_cert_pem)
            .map_err(|e| e.to_string())?
            .der
            .clone();
        let cert = x509::issue(&key, &params, &self.ids.service_key, &service_der).map_err(|e| e.to_string())?;
        Ok(cert.pem)
    }

    fn retire_old_nodes(&self, tx: &mut Tx<'_>) {
        let mut old = Vec::new();
        tx.foreach(NODES_INFO_TABLE, |k, v| {
            old.push((k.to_vec(), v.to_vec()));
            true
        });
        for (id, raw) in old {
            let Ok(mut info) = serde_json::from_slice::<serde_json::Value>(&raw) else {
                continue;
            };
            if info["status"] != "Retired" {
                info["status"] = "Retired".into();
                info["retired_committed"] = true.into();
                tx.put(NODES_INFO_TABLE, &id, info.to_string().as_bytes());
            }
        }
    }

    /// After a recovered node opened: the recovery transaction (written once; a restart before it committed writes
    /// it again), then signing, then whatever of the recovery a restart interrupted.
    pub(super) fn continue_recovery(self: &Arc<Self>, record: &RecoveryRecord) -> Result<(), EngineError> {
        if !self.service_table_names_us() {
            self.write_recovery_tx(record.base_seqno)?;
        }
        self.lock().replica.set_sign_on_election(true);
        self.wait_committed_inline(super::genesis::MAX_GENESIS_TICKS);
        self.resume_recovery();
        Ok(())
    }

    /// A recovered node restarted while it had every share it needed (it stopped during the private replay):
    /// starts the replay again.
    pub(super) fn resume_recovery(self: &Arc<Self>) {
        let Some(base) = self
            .recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.0)
        else {
            return;
        };
        if self.service_status().as_deref() != Some("WaitingForRecoveryShares") {
            return;
        }
        if !self.private_pending() {
            // The old private state is back but the opening transaction was not written (a crash in between).
            match self.open_recovered(base) {
                Ok(()) => self.set_stage(RecoveryStage::Complete),
                Err(error) => self.set_stage(RecoveryStage::Failed { error }),
            }
            return;
        }
        let store = self.store();
        let read = store.read_only();
        let submitted = submitted_count(&read);
        if submitted >= threshold(&read) {
            self.start_private_restore();
        }
    }

    /// Whether the service table names this node's service certificate (false before the recovery transaction).
    pub(super) fn service_table_names_us(&self) -> bool {
        self.service_info()
            .and_then(|i| i["cert"].as_str().map(|c| c.trim() == self.ids.service_cert_pem.trim()))
            .unwrap_or(false)
    }

    /// Whether this node is a recovered one whose old private state is not restored yet.
    pub fn private_pending(&self) -> bool {
        // Asked by every application request: reads the mirror in place, no copy of the keyring.
        !self.secrets.read().unwrap_or_else(|e| e.into_inner()).covers(1)
    }

    /// `/node/state`'s view of the recovery, if this node recovered a service.
    pub fn recovery_state(&self) -> Option<serde_json::Value> {
        let progress = self.recovery.lock().unwrap_or_else(|e| e.into_inner());
        let (base, stage) = progress.as_ref()?;
        let store = self.store();
        let read = store.read_only();
        let submitted = submitted_count(&read);
        Some(serde_json::json!({
            "base_seqno": base,
            "stage": stage,
            "submitted_shares": submitted,
            "threshold": threshold(&read),
        }))
    }

    fn set_stage(&self, stage: RecoveryStage) {
        if let Some(p) = self.recovery.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            p.1 = stage;
        }
    }

    /// Restores the old secrets from the submitted shares, replays the old private domains and opens the service,
    /// on a thread of its own (the replay may be long; its progress is logged). A failure is logged and shown in
    /// `/node/state`; the service keeps waiting.
    pub fn start_private_restore(self: &Arc<Self>) {
        // One restore at a time: every share submitted past the threshold asks again.
        if self.restoring.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name("private-restore".into())
            .spawn(move || {
                match engine.restore_and_open() {
                    Ok(restored) => {
                        tracing::info!(restored, "recovery: private state restored, service open");
                        engine.set_stage(RecoveryStage::Complete);
                    }
                    Err(error) => {
                        tracing::error!(%error, "recovery: private restore failed");
                        engine.set_stage(RecoveryStage::Failed { error });
                    }
                }
                engine.restoring.store(false, std::sync::atomic::Ordering::Release);
            });
        if let Err(e) = spawned {
            self.restoring.store(false, std::sync::atomic::Ordering::Release);
            self.set_stage(RecoveryStage::Failed { error: e.to_string() });
        }
    }

    fn restore_and_open(&self) -> Result<usize, String> {
        let through = self
            .lock()
            .replica
            .private_pending_through()
            .ok_or("no restore is pending")?;
        self.set_stage(RecoveryStage::ReadingPrivateLedger { read_seqno: 0 });
        let old = self.restore_old_secrets(through)?;
        let mut restore = PrivateRestore::new(old, through);
        while let Some(next) = restore.next_seqno() {
            let chunk = self.lock().replica.read_chunk_of(next).map_err(|e| e.to_string())?;
            restore.apply_chunk(&chunk).map_err(|e| e.to_string())?;
            let read = restore.next_seqno().map_or(through, |n| n - 1);
            tracing::info!(read, of = through, "recovery: replaying the private ledger");
            self.set_stage(RecoveryStage::ReadingPrivateLedger { read_seqno: read });
        }
        let restored = {
            let mut e = self.lock();
            let n = e.replica.finish_private_restore(restore).map_err(|e| e.to_string())?;
            self.keep_secrets(&mut e);
            n
        };
        self.open_recovered(through)?;
        Ok(restored)
    }

    /// The old service's secrets: the latest from the submitted shares, the older ones along the chain the old
    /// ledger's historical table holds.
    fn restore_old_secrets(&self, through: u64) -> Result<LedgerSecrets, String> {
        let store = self.store();
        let read = store.read_only();
        let info: RecoverySharesInfo = read
            .get(RECOVERY_SHARES_TABLE, &SINGLETON_KEY)
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or("the old service issued no recovery shares")?;
        let mut submitted = Vec::new();
        read.foreach(SUBMITTED_SHARES_TABLE, |_, v| {
            submitted.push(v.to_vec());
            true
        });
        let latest = shares::restore(&info, &submitted, threshold(&read)).map_err(|e| e.to_string())?;
        let (last_rekey, historical) = self.scan_secret_history(through)?;
        let version = chain::latest_version(last_rekey, &historical);
        chain::restore_chain((version, latest), &historical).map_err(|e| e.to_string())
    }

    /// The old part's rekeys (the last one's seqno) and historical-table writes, from the public domains.
    fn scan_secret_history(&self, through: u64) -> Result<(Option<u64>, Vec<HistoricalWrite>), String> {
        let (mut last_rekey, mut historical) = (None, Vec::new());
        let mut next = 1;
        while next <= through {
            let chunk = self.lock().replica.read_chunk_of(next).map_err(|e| e.to_string())?;
            for (seqno, bytes) in chunk.iter().filter(|(s, _)| *s >= next && *s <= through) {
                let (entry, _) = parse_entry(bytes).map_err(|e| format!("seqno {seqno}: {e}"))?;
                let (_, ws) =
                    WriteSet::deserialise_public(entry.public_domain).map_err(|e| format!("seqno {seqno}: {e}"))?;
                if ws.maps.contains_key(ENCRYPTED_LEDGER_SECRETS_TABLE) {
                    last_rekey = Some(seqno);
                }
                let value = ws
                    .maps
                    .get(HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE)
                    .and_then(|m| m.writes.get(&SINGLETON_KEY[..]))
                    .and_then(|v| v.as_deref());
                if let Some(value) = value {
                    let entry: HistoricalLedgerSecret =
                        serde_json::from_slice(value).map_err(|e| format!("seqno {seqno}: {e}"))?;
                    historical.push(HistoricalWrite { seqno, entry });
                }
            }
            next = chunk.last_seqno().max(next) + 1;
        }
        Ok((last_rekey, historical))
    }

    /// The transaction that ends a recovery: the old latest secret chained under the recovered service's first
    /// one, the submitted shares cleared, fresh shares of the latest secret issued, the service Open.
    fn open_recovered(&self, base: u64) -> Result<(), String> {
        let outcome = self.execute_write(|tx, _| -> Result<(), String> {
            let keyring = self.ledger_secrets();
            let (new_version, new) = keyring.latest();
            let old_latest: (u64, LedgerSecret) = keyring
                .iter()
                .filter(|(v, _)| *v <= base)
                .last()
                .map(|(v, s)| (v, s.clone()))
                .ok_or("the old secrets are not restored")?;
            let iv: [u8; consort_crypto::GCM_IV_SIZE] = consort_crypto::random_array();
            let historical = HistoricalLedgerSecret {
                previous_ledger_secret: Some(PreviousLedgerSecret {
                    encrypted_data: B64.encode(chain::wrap_previous(new, &old_latest.1, &iv)),
                    version: old_latest.0,
                    previous_secret_stored_version: None,
                }),
                next_version: Some(base + 1).filter(|v| *v <= new_version),
            };
            tx.put(
                HISTORICAL_ENCRYPTED_LEDGER_SECRET_TABLE,
                &SINGLETON_KEY,
                &serde_json::to_vec(&historical).unwrap_or_default(),
            );
            let mut members = Vec::new();
            tx.foreach(SUBMITTED_SHARES_TABLE, |k, _| {
                members.push(k.to_vec());
                true
            });
            for m in members {
                tx.remove(SUBMITTED_SHARES_TABLE, &m);
            }
            super::secrets::issue_recovery_shares(tx, new).map_err(|e| e.to_string())?;
            consort_gov::open_service(tx).map_err(|e| e.to_string())
        });
        outcome
            .map(|_| ())
            .map_err(|e| format!("opening the recovered service: {e:?}"))
    }
}

/// How many recovery shares members have submitted.
fn submitted_count(read: &consort_kv::ReadTx<'_>) -> usize {
    let mut count = 0;
    read.foreach(SUBMITTED_SHARES_TABLE, |_, _| {
        count += 1;
        true
    });
    count
}

/// The recovery threshold in the service configuration (at least 1).
fn threshold(read: &consort_kv::ReadTx<'_>) -> usize {
    read.get(SERVICE_CONFIG, &SINGLETON_KEY)
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|c| c["recovery_threshold"].as_u64())
        .unwrap_or(1)
        .max(1) as usize
}

/// Why a submitted share was refused: (HTTP status, CCF error code, message).
pub type ShareError = (u16, &'static str, String);

/// `POST /gov/recovery/members/{memberId}:recover` inside its transaction: the member's signed `recovery_share`
/// request, checked (signature, member, service waiting for shares, the share one the old service issued to this
/// member), then stored. Returns how many shares are in and the threshold.
pub fn submit_share(
    tx: &mut Tx<'_>,
    member_id: &str,
    body: &[u8],
    now_seconds: i64,
) -> Result<(usize, usize), ShareError> {
    let req = consort_gov::verify_gov_request(tx, body, MsgType::RecoveryShare, None, now_seconds)
        .map_err(|e: GovError| (e.http_status(), e.code(), e.to_string()))?;
    if req.member_id != member_id {
        return Err((
            400,
            "InvalidResourceName",
            format!(
                "the request is signed by member {} but names {member_id}",
                req.member_id
            ),
        ));
    }
    let status = json_of(tx, SERVICE_INFO_TABLE, &SINGLETON_KEY).and_then(|i| i["status"].as_str().map(str::to_owned));
    if status.as_deref() != Some("WaitingForRecoveryShares") {
        return Err((
            403,
            "ServiceNotWaitingForRecoveryShares",
            format!(
                "the service is {}, not waiting for recovery shares",
                status.unwrap_or_else(|| "unknown".into())
            ),
        ));
    }
    let payload: serde_json::Value =
        serde_json::from_slice(&req.payload).map_err(|e| (400, "InvalidInput", format!("payload: {e}")))?;
    let share = payload["share"].as_str().and_then(|s| B64.decode(s).ok()).ok_or((
        400,
        "InvalidInput",
        "payload needs \"share\": base64".to_string(),
    ))?;
    let info: RecoverySharesInfo = json_of(tx, RECOVERY_SHARES_TABLE, &SINGLETON_KEY)
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or((
            500,
            "InternalError",
            "the old service issued no recovery shares".to_string(),
        ))?;
    shares::check_share(&info, member_id, &share).map_err(|e| {
        let code = match e {
            shares::ShareRefusal::NotRecoveryMember { .. } => "NotRecoveryMember",
            _ => "InvalidShare",
        };
        (403, code, e.to_string())
    })?;
    tx.put(SUBMITTED_SHARES_TABLE, member_id.as_bytes(), &share);
    let mut count = 0;
    tx.foreach(SUBMITTED_SHARES_TABLE, |_, _| {
        count += 1;
        true
    });
    let read_threshold = json_of(tx, SERVICE_CONFIG, &SINGLETON_KEY)
        .and_then(|c| c["recovery_threshold"].as_u64())
        .unwrap_or(1)
        .max(1) as usize;
    Ok((count, read_threshold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identities;

    #[test]
    fn a_record_is_only_for_the_node_and_service_that_wrote_it() {
        let platform = consort_attest::VirtualPlatform::new([0; 32]);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ids_a = Identities::generate(&platform, a.path(), &[]).unwrap();
        let ids_b = Identities::generate(&platform, b.path(), &[]).unwrap();
        let record = RecoveryRecord::new(42, &ids_a);
        save_record(&platform, a.path(), &record).unwrap();
        let loaded = load_record(&platform, a.path()).unwrap().unwrap();
        assert_eq!(loaded, record);
        assert!(loaded.is_for(&ids_a));
        assert!(!loaded.is_for(&ids_b), "a record copied onto another node");
        assert!(load_record(&platform, b.path()).unwrap().is_none());
        // An unsealed or edited file does not load.
        std::fs::write(a.path().join(RECOVERY_RECORD_FILE), br#"{"base_seqno": 1}"#).unwrap();
        assert!(load_record(&platform, a.path()).is_err());
    }

    #[test]
    fn endorsements_cover_the_transactions_of_each_previous_identity() {
        let p = |n: &str, last| PreviousIdentity {
            cert: format!("old {n}"),
            endorsed_cert: format!("endorsed {n}"),
            last_seqno: last,
        };
        let chain = [p("a", 10), p("b", 20)];
        assert_eq!(endorsements_for(&chain, 5), ["endorsed a", "endorsed b"]);
        assert_eq!(endorsements_for(&chain, 15), ["endorsed b"]);
        assert!(endorsements_for(&chain, 21).is_empty());
    }
}

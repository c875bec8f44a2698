//! The `/gov` side of disaster recovery: opening a recovered service (`transition_service_to_open` with the previous
//! and next identities makes it wait for shares) and `POST /gov/recovery/members/{memberId}:recover`, a member's
//! decrypted recovery share; at the threshold the node restores the old private state and opens
//! (`engine::recovery`).

use super::gov::{json, GovReply};
use crate::engine::recovery::{previous_identities, submit_share};
use crate::engine::{Engine, WriteError};
use consort_gov::GovError;
use consort_kv::Tx;
use consort_ledger::{SERVICE_INFO_TABLE, SINGLETON_KEY};

/// `transition_service_to_open` on a recovered service whose old private state is not restored: checks that the
/// members name the identity the ledger's old part was signed under and this service's, and makes the service
/// wait for recovery shares.
pub(super) fn await_shares(
    svc: &Engine,
    tx: &mut Tx<'_>,
    previous: Option<&str>,
    next: Option<&str>,
) -> Result<(), GovError> {
    let fail = |m: String| GovError::ProposalFailed(m);
    let mut info: serde_json::Value = tx
        .get(SERVICE_INFO_TABLE, &SINGLETON_KEY)
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| fail("no service information".into()))?;
    if info["status"] != "Recovering" {
        return Err(fail(format!(
            "the service is {}, not recovering",
            info["status"].as_str().unwrap_or("unknown")
        )));
    }
    let store = svc.store();
    let recorded = previous_identities(&store.read_only())
        .last()
        .map(|p| p.cert.clone())
        .ok_or_else(|| fail("no previous service identity is recorded".into()))?;
    let same = |a: &str, b: &str| a.trim() == b.trim();
    if !previous.is_some_and(|p| same(p, &recorded)) {
        return Err(fail(
            "previous_service_identity is not the identity the recovered ledger was signed under".into(),
        ));
    }
    if !next.is_some_and(|n| same(n, &svc.identities().service_cert_pem)) {
        return Err(fail("next_service_identity is not this service's identity".into()));
    }
    info["status"] = "WaitingForRecoveryShares".into();
    tx.put(SERVICE_INFO_TABLE, &SINGLETON_KEY, info.to_string().as_bytes());
    Ok(())
}

/// `POST /gov/recovery/members/{memberId}:recover`.
pub(super) fn submit(svc: &Engine, member_id: &str, body: &[u8], now_seconds: i64) -> GovReply {
    let outcome = svc.execute_write(|tx, _| submit_share(tx, member_id, body, now_seconds));
    let error = |status: u16, code: &str, message: String| {
        json(
            status,
            serde_json::json!({"error": {"code": code, "message": message}}),
            None,
        )
    };
    match outcome {
        Ok(((count, threshold), txid)) => {
            let mut message = format!("{count}/{threshold} recovery shares successfully submitted");
            if count >= threshold {
                message.push_str(". End of recovery procedure initiated.");
                tracing::info!(count, threshold, "recovery: enough shares; restoring the private state");
                if let Some(engine) = svc.shared() {
                    engine.start_private_restore();
                }
            }
            json(200, serde_json::json!({ "message": message }), Some(txid))
        }
        Err(WriteError::Body((status, code, message))) => {
            tracing::info!(%member_id, code, "recovery share refused: {message}");
            error(status, code, message)
        }
        Err(WriteError::Conflict) => error(409, "TransactionConflict", "retry".into()),
        Err(WriteError::NotPrimary(_)) => error(503, "NotPrimary", "this node is not the primary".into()),
        Err(WriteError::Refused(m)) => error(503, "ProposalRefused", m),
    }
}

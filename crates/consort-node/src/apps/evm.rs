//! The EVM app (`POST /app/eth`): Ethereum's JSON-RPC over consort-evm, inside the KV transaction the node gives.
//!
//! Callers are registered users (`user_cert`, or `user_cose_sign1` with the JSON-RPC body as the signed
//! payload). The endpoint is declared read-write, so a backup forwards it to the primary; but a body that does
//! not name `eth_sendRawTransaction` is served read-only where it arrives ([`App::request_mode`]), so
//! `eth_call`, balances and receipts need neither consensus nor forwarding. Every request that includes EVM
//! transactions sets the claims digest of `consort_evm::Reply::claims_digest` on its Consort transaction.

use super::{App, AppRequest, AppResponse, AuthPolicies, AuthPolicy, Caller, EndpointInfo, History, Mode, RawBody};
use consort_evm::{CodeCache, ConfigCache, Session};
use consort_kv::Tx;
use std::sync::{Arc, OnceLock};

/// The path this app serves (relative to `/app`).
pub const PREFIX: &str = "/eth";

/// The EVM app: caches of analysed bytecode and of the parsed configuration, shared by all requests, and the
/// node's history for its committed seqno (receipts, logs and blocks show committed transactions only).
#[derive(Default)]
pub struct EvmApp {
    codes: CodeCache,
    config: ConfigCache,
    history: OnceLock<Arc<dyn History>>,
}

impl std::fmt::Debug for EvmApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmApp").finish_non_exhaustive()
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl App for EvmApp {
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        (method == "POST" && path == PREFIX).then(|| EndpointInfo {
            auth: AuthPolicies::only(AuthPolicy::UserCert).with(AuthPolicy::UserCoseSign1),
            mode: Mode::ReadWrite,
        })
    }

    fn request_mode(&self, _method: &str, _path: &str, body: &[u8], declared: Mode) -> Mode {
        if consort_evm::needs_write(body) {
            declared
        } else {
            Mode::ReadOnly
        }
    }

    fn runs_long(&self, _method: &str, _path: &str, body: &[u8]) -> bool {
        consort_evm::runs_long(body)
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        let Some(user) = req.caller.user_id() else {
            return AppResponse::error(
                401,
                "InvalidAuthenticationInfo",
                "the EVM app serves registered users only",
            );
        };
        let body = match req.caller {
            Caller::UserCose(c) => c.content.as_slice(),
            _ => req.body,
        };
        let config = match self.config.load(tx) {
            Ok(c) => c,
            Err(e) => return AppResponse::error(500, "InternalError", e.message),
        };
        let session = Session {
            user,
            now_s: now_s(),
            config: &config,
            codes: &self.codes,
            committed: self.history.get().map(|h| h.committed_seqno()),
        };
        let reply = consort_evm::handle(tx, body, &session);
        let mut resp = AppResponse::ok(serde_json::Value::Null);
        resp.claims_digest = reply.claims_digest().map(Box::new);
        resp.raw = Some(Box::new(RawBody {
            content_type: "application/json".into(),
            bytes: reply.body,
        }));
        resp
    }

    fn attach_history(&self, history: Arc<dyn History>) {
        let _ = self.history.set(history);
    }

    fn openapi_paths(&self) -> serde_json::Value {
        serde_json::json!({
            "/app/eth": {"post": {"summary": "Ethereum JSON-RPC 2.0 (single requests and batches)",
                "responses": {"200": {"description": "JSON-RPC response"}}}}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_body_with_a_send_runs_as_a_write_and_only_users_are_served() {
        let app = EvmApp::default();
        let info = app.endpoint("POST", PREFIX).unwrap();
        assert_eq!(info.mode, Mode::ReadWrite);
        assert!(!info.auth.contains(AuthPolicy::NoAuth));
        assert!(app.endpoint("GET", PREFIX).is_none());
        let read = br#"{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{}]}"#;
        let send = br#"[{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x00"]}]"#;
        assert_eq!(app.request_mode("POST", PREFIX, read, Mode::ReadWrite), Mode::ReadOnly);
        assert_eq!(app.request_mode("POST", PREFIX, send, Mode::ReadWrite), Mode::ReadWrite);
        assert!(app.runs_long("POST", PREFIX, read));
        assert!(!app.runs_long("POST", PREFIX, send));

        let store = std::sync::Arc::new(consort_kv::Store::new());
        let mut tx = Tx::shared(store);
        let mut req = AppRequest {
            method: "POST",
            path: PREFIX,
            query: "",
            headers: &[],
            body: br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#,
            caller: &Caller::Anonymous,
            historical: None,
        };
        assert_eq!(app.handle(&req, &mut tx).status, 401);
        let user = Caller::User("u".into());
        req.caller = &user;
        let resp = app.handle(&req, &mut tx);
        let body: serde_json::Value = serde_json::from_slice(&resp.raw.unwrap().bytes).unwrap();
        assert_eq!(body["result"], "0x4353");
        assert_eq!(resp.claims_digest, None);
    }
}

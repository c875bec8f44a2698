//! Authentication demo endpoints, after CCF's logging sample: `/app/multi_auth` (GET and POST) accepts every
//! policy and describes the caller and the policy that authenticated it; `/app/jwt` accepts only bearer tokens
//! (GET answers the token's claims on any node; POST is a write, so a backup forwards it, and records the
//! subject's last call in `public:multi_auth.jwt_calls`).

use super::{App, AppRequest, AppResponse, AuthPolicies, AuthPolicy, Caller, EndpointInfo, Mode};
use consort_kv::Tx;
use serde_json::{json, Value};

/// Path of the endpoint that accepts every policy.
pub const MULTI_AUTH_PATH: &str = "/multi_auth";
/// Path of the endpoint that accepts only `jwt`.
pub const JWT_PATH: &str = "/jwt";
/// Subjects (`sub`) of bearer tokens that called `POST /app/jwt` -> the call's issuer and claims.
pub const JWT_CALLS_MAP: &str = "public:multi_auth.jwt_calls";

/// The demo app (serves both [`MULTI_AUTH_PATH`] and [`JWT_PATH`]; register it under each).
#[derive(Debug, Clone, Copy, Default)]
pub struct MultiAuthApp;

/// What the app says about a caller: the policy's name and the identity it established.
pub fn describe(caller: &Caller) -> Value {
    let identity = match caller {
        Caller::Anonymous => json!({}),
        Caller::User(id) | Caller::Member(id) => json!({ "id": id }),
        Caller::AnyCert(id) => json!({ "cert_id": id }),
        Caller::Jwt(jwt) => json!({ "issuer": jwt.key_issuer, "header": jwt.header, "payload": jwt.payload }),
        Caller::UserCose(c) => json!({
            "id": c.user_id,
            "content": String::from_utf8_lossy(&c.content),
            "protected": c.protected,
        }),
    };
    json!({ "policy": caller.policy().name(), "caller": identity })
}

impl App for MultiAuthApp {
    fn endpoint(&self, method: &str, path: &str) -> Option<EndpointInfo> {
        match (method, path) {
            ("GET" | "POST", MULTI_AUTH_PATH) => Some(EndpointInfo {
                auth: AuthPolicy::ALL.into_iter().collect::<AuthPolicies>(),
                mode: Mode::ReadOnly,
            }),
            ("GET", JWT_PATH) => Some(EndpointInfo {
                auth: AuthPolicies::only(AuthPolicy::Jwt),
                mode: Mode::ReadOnly,
            }),
            ("POST", JWT_PATH) => Some(EndpointInfo {
                auth: AuthPolicies::only(AuthPolicy::Jwt),
                mode: Mode::ReadWrite,
            }),
            _ => None,
        }
    }

    fn handle(&self, req: &AppRequest<'_>, tx: &mut Tx<'static>) -> AppResponse {
        match (req.path, req.caller) {
            (MULTI_AUTH_PATH, caller) => AppResponse::ok(describe(caller)),
            (JWT_PATH, Caller::Jwt(jwt)) => {
                let answer = json!({ "issuer": jwt.key_issuer, "claims": jwt.payload });
                if req.method == "POST" {
                    let sub = jwt.payload.get("sub").and_then(Value::as_str).unwrap_or_default();
                    tx.put(JWT_CALLS_MAP, sub.as_bytes(), answer.to_string().as_bytes());
                }
                AppResponse::ok(answer)
            }
            // The node authenticated by the endpoint's policy, so another caller here is a routing mistake.
            _ => AppResponse::error(
                401,
                "InvalidAuthenticationInfo",
                "this endpoint accepts only bearer tokens",
            ),
        }
    }

    fn openapi_paths(&self) -> Value {
        let op = |summary: &str| json!({ "summary": summary, "responses": { "200": { "description": "OK" } } });
        json!({
            "/app/multi_auth": {
                "get": op("Describes the caller under any authentication policy"),
                "post": op("Describes the caller under any authentication policy"),
            },
            "/app/jwt": {
                "get": op("The claims of the caller's bearer token"),
                "post": op("Records the bearer token's subject (a write)"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_auth_accepts_every_policy_and_jwt_only_jwt() {
        let app = MultiAuthApp;
        let all = app.endpoint("POST", MULTI_AUTH_PATH).unwrap();
        assert!(AuthPolicy::ALL.iter().all(|p| all.auth.contains(*p)));
        let jwt = app.endpoint("POST", JWT_PATH).unwrap();
        assert_eq!(jwt.auth, AuthPolicies::only(AuthPolicy::Jwt));
        assert_eq!(jwt.mode, Mode::ReadWrite);
        assert!(app.endpoint("PUT", JWT_PATH).is_none());
        assert_eq!(describe(&Caller::AnyCert("ab".into()))["policy"], "any_cert");
        assert_eq!(describe(&Caller::Anonymous)["policy"], "no_auth");
    }
}

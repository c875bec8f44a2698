//! The conformance suite every [`Platform`] implementation runs: evidence binds the key it was made for and no
//! other, and sealing round-trips and refuses altered data.

use crate::{verify, AttestError, Platform};

/// Runs the suite against `platform` with two distinct public keys (DER); returns the first failure.
pub fn check_platform(platform: &dyn Platform, key_der: &[u8], other_key_der: &[u8]) -> Result<(), String> {
    assert_ne!(key_der, other_key_der, "the suite needs two different keys");
    let evidence = platform
        .evidence_for(key_der)
        .map_err(|e| format!("evidence_for: {e}"))?;
    if evidence.format != platform.kind() {
        return Err(format!(
            "evidence format {} differs from the platform's {}",
            evidence.format,
            platform.kind()
        ));
    }
    let claims = verify(&evidence, key_der).map_err(|e| format!("own evidence does not verify: {e}"))?;
    if claims.kind != platform.kind() {
        return Err("claims name another format".into());
    }
    if claims.security_warning != platform.security_warning() {
        return Err("claims and platform disagree on the security warning".into());
    }
    match verify(&evidence, other_key_der) {
        Err(AttestError::KeyBindingMismatch) => {}
        other => return Err(format!("evidence verified for another key: {other:?}")),
    }
    let round_trip = crate::Evidence::from_json(&evidence.to_json()).map_err(|e| format!("JSON: {e}"))?;
    if round_trip != evidence {
        return Err("evidence changed through JSON".into());
    }

    let secret = b"conformance secret \x00\xff";
    let sealed = platform.seal(secret).map_err(|e| format!("seal: {e}"))?;
    let unsealed = platform.unseal(&sealed).map_err(|e| format!("unseal: {e}"))?;
    if unsealed != secret {
        return Err("unseal(seal(x)) != x".into());
    }
    if platform
        .unseal(&sealed[..sealed.len() / 2])
        .is_ok_and(|plain| plain == secret)
    {
        return Err("a truncated sealed secret unsealed to the secret".into());
    }
    if platform.unseal(b"not sealed at all").is_ok() {
        return Err("unsealed bytes that no platform sealed".into());
    }
    Ok(())
}

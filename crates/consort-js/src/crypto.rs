//! `ccf.crypto` for apps: digests, signing and signature verification (ECDSA P-256/P-384, RSA PKCS#1 v1.5 and
//! PSS), key generation, and RSA-OAEP key wrapping, all through the workspace's crypto crates.

use rquickjs::{Ctx, Exception, Function, Object, Value};
use rsa::pkcs1v15;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::pss;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use serde::Deserialize;

use crate::host::{bin, buffer};
use consort_crypto::{Curve, HashAlg, SigningKey, VerifyingKey};

/// Largest RSA key `generateRsaKeyPair` makes (bits); generation time grows steeply with size.
pub(crate) const MAX_RSA_KEY_BITS: usize = 4096;

#[derive(Deserialize)]
struct Algorithm {
    name: String,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default, rename = "saltLength")]
    salt_length: Option<usize>,
}

fn hash_of(name: Option<&str>) -> Result<HashAlg, String> {
    match name.unwrap_or("SHA-256") {
        "SHA-256" => Ok(HashAlg::Sha256),
        "SHA-384" => Ok(HashAlg::Sha384),
        other => Err(format!("unsupported hash {other}")),
    }
}

fn digest(alg: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    use sha2::Digest;
    match alg {
        "SHA-256" => Ok(consort_crypto::sha256(data).to_vec()),
        "SHA-384" => Ok(consort_crypto::sha384(data).to_vec()),
        "SHA-512" => Ok(sha2::Sha512::digest(data).to_vec()),
        other => Err(format!("unsupported digest algorithm {other}")),
    }
}

/// A public key from a PEM public key or certificate.
enum PublicKey {
    Ec(VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

fn public_key(pem_text: &str) -> Result<PublicKey, String> {
    if pem_text.contains("CERTIFICATE") {
        let cert = consort_crypto::ParsedCert::from_pem(pem_text).map_err(|e| e.to_string())?;
        if let Ok(k) = cert.public_key() {
            return Ok(PublicKey::Ec(k));
        }
        let spki = cert.spki_der.clone();
        return rsa::RsaPublicKey::from_public_key_der(&spki)
            .map(PublicKey::Rsa)
            .map_err(|e| format!("unsupported certificate key: {e}"));
    }
    if let Ok(k) = VerifyingKey::from_pem(pem_text) {
        return Ok(PublicKey::Ec(k));
    }
    rsa::RsaPublicKey::from_public_key_pem(pem_text)
        .map(PublicKey::Rsa)
        .map_err(|e| format!("not a PEM public key or certificate: {e}"))
}

fn verify(algorithm: &str, key: &str, signature: &[u8], data: &[u8]) -> Result<bool, String> {
    let alg: Algorithm = serde_json::from_str(algorithm).map_err(|e| format!("bad algorithm: {e}"))?;
    let hash = hash_of(alg.hash.as_deref())?;
    match (alg.name.as_str(), public_key(key)?) {
        ("ECDSA", PublicKey::Ec(k)) => {
            // WebCrypto's IEEE P1363 (r ‖ s) form, or DER.
            let ok = if signature.len() == k.curve().raw_signature_size() {
                k.verify_raw(data, hash, signature).is_ok()
            } else {
                k.verify_der(data, hash, signature).is_ok()
            };
            Ok(ok)
        }
        ("RSASSA-PKCS1-v1_5", PublicKey::Rsa(k)) => {
            let Ok(sig) = pkcs1v15::Signature::try_from(signature) else {
                return Ok(false);
            };
            Ok(match hash {
                HashAlg::Sha256 => pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(k)
                    .verify(data, &sig)
                    .is_ok(),
                HashAlg::Sha384 => pkcs1v15::VerifyingKey::<rsa::sha2::Sha384>::new(k)
                    .verify(data, &sig)
                    .is_ok(),
            })
        }
        ("RSA-PSS", PublicKey::Rsa(k)) => {
            let Ok(sig) = pss::Signature::try_from(signature) else {
                return Ok(false);
            };
            Ok(match hash {
                HashAlg::Sha256 => pss::VerifyingKey::<rsa::sha2::Sha256>::new(k)
                    .verify(data, &sig)
                    .is_ok(),
                HashAlg::Sha384 => pss::VerifyingKey::<rsa::sha2::Sha384>::new(k)
                    .verify(data, &sig)
                    .is_ok(),
            })
        }
        (name, _) => Err(format!("algorithm {name} does not fit the key, or is not supported")),
    }
}

fn sign(algorithm: &str, key: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let alg: Algorithm = serde_json::from_str(algorithm).map_err(|e| format!("bad algorithm: {e}"))?;
    let hash = hash_of(alg.hash.as_deref())?;
    match alg.name.as_str() {
        "ECDSA" => {
            let k = SigningKey::from_pem(key).map_err(|e| e.to_string())?;
            Ok(k.sign_raw(data, hash))
        }
        "RSASSA-PKCS1-v1_5" | "RSA-PSS" => {
            let k = rsa::RsaPrivateKey::from_pkcs8_pem(key).map_err(|e| format!("not a PKCS#8 RSA key: {e}"))?;
            let mut rng = rand_core::OsRng;
            let sig = match (alg.name.as_str(), hash) {
                ("RSA-PSS", HashAlg::Sha256) => {
                    pss::SigningKey::<rsa::sha2::Sha256>::new_with_salt_len(k, alg.salt_length.unwrap_or(32))
                        .sign_with_rng(&mut rng, data)
                        .to_vec()
                }
                ("RSA-PSS", HashAlg::Sha384) => {
                    pss::SigningKey::<rsa::sha2::Sha384>::new_with_salt_len(k, alg.salt_length.unwrap_or(48))
                        .sign_with_rng(&mut rng, data)
                        .to_vec()
                }
                (_, HashAlg::Sha256) => pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(k)
                    .sign_with_rng(&mut rng, data)
                    .to_vec(),
                (_, HashAlg::Sha384) => pkcs1v15::SigningKey::<rsa::sha2::Sha384>::new(k)
                    .sign_with_rng(&mut rng, data)
                    .to_vec(),
            };
            Ok(sig)
        }
        other => Err(format!("unsupported signing algorithm {other}")),
    }
}

fn ecdsa_key_pair(curve: &str) -> Result<String, String> {
    let curve = match curve {
        "secp256r1" | "P-256" => Curve::P256,
        "secp384r1" | "P-384" => Curve::P384,
        other => Err(format!("unsupported curve {other}"))?,
    };
    let k = SigningKey::generate(curve);
    Ok(serde_json::json!({"privateKey": k.to_pkcs8_pem(), "publicKey": k.verifying_key().to_pem()}).to_string())
}

fn rsa_key_pair(bits: usize, exponent: u64) -> Result<String, String> {
    if !(1024..=MAX_RSA_KEY_BITS).contains(&bits) {
        return Err(format!("RSA key size must be 1024 to {MAX_RSA_KEY_BITS} bits"));
    }
    let e = rsa::BigUint::from(exponent);
    let k = rsa::RsaPrivateKey::new_with_exp(&mut rand_core::OsRng, bits, &e).map_err(|e| e.to_string())?;
    let private = k.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
    let public = k
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({"privateKey": private.as_str(), "publicKey": public}).to_string())
}

fn wrap_algorithm(params: &str) -> Result<(), String> {
    let alg: Algorithm = serde_json::from_str(params).map_err(|e| format!("bad wrapping parameters: {e}"))?;
    match alg.name.as_str() {
        "RSA-OAEP" => Ok(()),
        other => Err(format!(
            "unsupported wrapping algorithm {other} (RSA-OAEP is supported)"
        )),
    }
}

fn throw(ctx: &Ctx<'_>, msg: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, msg)
}

/// Installs the crypto natives on the host object.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, obj: &Object<'js>) -> rquickjs::Result<()> {
    let f = |ctx: Ctx<'js>, alg: String, data: String| -> rquickjs::Result<Value<'js>> {
        let out = bin(&data).and_then(|d| digest(&alg, &d)).map_err(|e| throw(&ctx, &e))?;
        buffer(&ctx, out)
    };
    obj.set("digest", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, alg: String, key: String, sig: String, data: String| -> rquickjs::Result<bool> {
        let (sig, data) = (bin(&sig), bin(&data));
        let (sig, data) = sig.and_then(|s| Ok((s, data?))).map_err(|e| throw(&ctx, &e))?;
        verify(&alg, &key, &sig, &data).map_err(|e| throw(&ctx, &e))
    };
    obj.set("verifySignature", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, alg: String, key: String, data: String| -> rquickjs::Result<Value<'js>> {
        let out = bin(&data)
            .and_then(|d| sign(&alg, &key, &d))
            .map_err(|e| throw(&ctx, &e))?;
        buffer(&ctx, out)
    };
    obj.set("sign", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, bits: f64| -> rquickjs::Result<Value<'js>> {
        if !matches!(bits as u32, 128 | 192 | 256) {
            return Err(throw(&ctx, "AES key size must be 128, 192 or 256 bits"));
        }
        buffer(&ctx, consort_crypto::random_bytes(bits as usize / 8))
    };
    obj.set("generateAesKey", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, curve: String| -> rquickjs::Result<String> {
        ecdsa_key_pair(&curve).map_err(|e| throw(&ctx, &e))
    };
    obj.set("generateEcdsaKeyPair", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, bits: f64, exponent: f64| -> rquickjs::Result<String> {
        rsa_key_pair(bits as usize, exponent as u64).map_err(|e| throw(&ctx, &e))
    };
    obj.set("generateRsaKeyPair", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, key: String, wrapping_pem: String, params: String| -> rquickjs::Result<Value<'js>> {
        let out = wrap_algorithm(&params)
            .and_then(|()| bin(&key))
            .and_then(|k| {
                consort_crypto::oaep::encrypt(&wrapping_pem, &k, &mut rand_core::OsRng).map_err(|e| e.to_string())
            })
            .map_err(|e| throw(&ctx, &e))?;
        buffer(&ctx, out)
    };
    obj.set("wrapKey", Function::new(ctx.clone(), f)?)?;
    let f = |ctx: Ctx<'js>, wrapped: String, unwrapping_pem: String, params: String| -> rquickjs::Result<Value<'js>> {
        let out = wrap_algorithm(&params)
            .and_then(|()| bin(&wrapped))
            .and_then(|w| consort_crypto::oaep::decrypt(&unwrapping_pem, &w).map_err(|e| e.to_string()))
            .map_err(|e| throw(&ctx, &e))?;
        buffer(&ctx, out)
    };
    obj.set("unwrapKey", Function::new(ctx.clone(), f)?)?;
    let f = |pem: String| -> bool { consort_crypto::ParsedCert::all_from_pem(&pem).is_ok_and(|c| !c.is_empty()) };
    obj.set("isValidX509CertBundle", Function::new(ctx.clone(), f)?)?;
    Ok(())
}

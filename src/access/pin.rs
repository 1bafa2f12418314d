//! Staff PIN verifiers: Argon2id keyed with the store's pepper.
//!
//! The pepper is Argon2's "secret" input (RFC 9106 §3.1), so a stolen database without the
//! pepper (which lives in config or the environment, never in SQLite) cannot be brute-forced
//! over the small PIN space. Parameters are OWASP's minimum for Argon2id: 19 MiB, t=2, p=1.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP Password Storage Cheat Sheet minimum for Argon2id.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

fn hasher(pepper: &[u8]) -> Result<Argon2<'_>, argon2::Error> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)?;
    Argon2::new_with_secret(pepper, Algorithm::Argon2id, Version::V0x13, params)
}

/// Makes a PHC-string verifier for `pin` under `pepper` (what HQ puts in the staff feed).
pub fn make_verifier(pin: &str, pepper: &[u8], salt_seed: [u8; 16]) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&salt_seed).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = hasher(pepper)
        .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?
        .hash_password(pin.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

/// Checks `pin` against a PHC verifier. Any malformed verifier is simply "no match".
pub fn verify(pin: &str, verifier: &str, pepper: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(verifier) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let Ok(h) = hasher(pepper) else { return false };
    h.verify_password(pin.as_bytes(), &parsed).is_ok()
}

/// True when `verifier` is a well-formed Argon2id PHC string (feed validation).
pub fn is_argon2id_phc(verifier: &str) -> bool {
    PasswordHash::new(verifier).is_ok_and(|p| p.algorithm.as_str() == "argon2id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_round_trips_only_with_the_same_pepper() {
        let v = make_verifier("4821", b"pepper-one", [7; 16]).unwrap();
        assert!(is_argon2id_phc(&v));
        assert!(verify("4821", &v, b"pepper-one"));
        assert!(!verify("4822", &v, b"pepper-one"));
        assert!(!verify("4821", &v, b"pepper-two"));
        assert!(!verify("4821", "not a phc string", b"pepper-one"));
    }
}

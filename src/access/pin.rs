//! Staff PIN verifiers: Argon2id keyed with the store's pepper.
//!
//! The pepper is Argon2's "secret" input (RFC 9106 §3.1), so a stolen database without the
//! pepper (which lives in config or the environment, never in SQLite) cannot be brute-forced
//! over the small PIN space. Parameters are OWASP's minimum for Argon2id: 19 MiB, t=2, p=1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

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
    verify_in(pin, verifier, pepper, &mut Vec::new())
}

/// The most memory a verifier may ask for (KiB): a verifier from the staff feed asking for
/// more is refused as malformed rather than allocated (4× OWASP's minimum).
pub const MAX_MEMORY_KIB: u32 = 4 * MEMORY_KIB;

/// Argon2's working memory is allocated with a capacity above glibc's largest dynamic mmap
/// threshold (32 MiB), so it is always its own mapping and goes back to the system when freed.
/// Without this, glibc serves repeated 19 MiB allocations from per-thread arenas and keeps
/// them: 500 parallel sign-ins left RSS at about 900 MB (issue 14). Only the pages used
/// (19 MiB at our parameters) are ever touched.
const BUFFER_CAPACITY_BLOCKS: usize = 33 * 1024;

/// [`verify`] in the caller's working memory (grown as needed, reused across checks).
fn verify_in(pin: &str, verifier: &str, pepper: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(verifier) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    if params.m_cost() > MAX_MEMORY_KIB {
        return false;
    }
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let Ok(argon) = Argon2::new_with_secret(pepper, Algorithm::Argon2id, version, params.clone())
    else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        if memory.capacity() < blocks {
            *memory = Vec::with_capacity(blocks.max(BUFFER_CAPACITY_BLOCKS));
        }
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    argon
        .hash_password_into_with_memory(pin.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        // `Output`'s equality is constant-time.
        && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// The PIN checks running at once, bounded (`access.pin_checks_at_once`), each in working
/// memory that is reused while checks are queued and given back to the system when none are:
/// a flood of sign-ins costs at most `at_once` buffers, and none once it is over.
pub struct PinChecker {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    spare: Mutex<Vec<Vec<Block>>>,
}

impl PinChecker {
    pub fn new(at_once: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(at_once.max(1))),
            waiting: AtomicUsize::new(0),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// Checks `pin` on the blocking pool when a permit is free.
    pub async fn verify(self: &Arc<Self>, pin: &str, verifier: &str, pepper: &[u8]) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(permit) = permit else { return false };
        let (me, pin, verifier, pepper) = (
            self.clone(),
            pin.to_string(),
            verifier.to_string(),
            pepper.to_vec(),
        );
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut memory = me.take();
            let matched = verify_in(&pin, &verifier, &pepper, &mut memory);
            me.give_back(memory);
            matched
        })
        .await
        .unwrap_or(false)
    }

    fn take(&self) -> Vec<Block> {
        self.spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn give_back(&self, memory: Vec<Block>) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if self.waiting.load(Ordering::SeqCst) > 0 {
            spare.push(memory);
        } else {
            // Nobody queued: this buffer and any spare go back to the system.
            spare.clear();
        }
    }

    /// Buffers kept for queued checks (tests).
    pub fn spare_buffers(&self) -> usize {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
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

    #[test]
    fn a_verifier_asking_for_too_much_memory_never_matches() {
        let params = Params::new(MAX_MEMORY_KIB + 8, 1, 1, None).unwrap();
        let argon =
            Argon2::new_with_secret(b"p", Algorithm::Argon2id, Version::V0x13, params).unwrap();
        let salt = SaltString::encode_b64(&[1; 16]).unwrap();
        let v = argon.hash_password(b"1234", &salt).unwrap().to_string();
        assert!(!verify("1234", &v, b"p"));
    }

    #[tokio::test]
    async fn the_checker_reuses_memory_while_queued_and_keeps_none_after() {
        let v = make_verifier("4821", b"pepper", [3; 16]).unwrap();
        let checker = Arc::new(PinChecker::new(2));
        let runs: Vec<_> = (0..6)
            .map(|i| {
                let (c, v) = (checker.clone(), v.clone());
                tokio::spawn(async move {
                    c.verify(if i == 3 { "4821" } else { "0000" }, &v, b"pepper")
                        .await
                })
            })
            .collect();
        let mut matched = Vec::new();
        for r in runs {
            matched.push(r.await.unwrap());
        }
        assert_eq!(matched, [false, false, false, true, false, false]);
        assert_eq!(checker.spare_buffers(), 0);
    }
}

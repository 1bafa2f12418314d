//! Bearer tokens (devices, the HQ sync job) are stored and configured only as SHA-256 hex.
//! A token is 32 random bytes, so a fast hash is enough: there is nothing to brute-force.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of a token, as kept in config (`tokens[].sha256`) and in the devices feed.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token: 32 bytes, hex.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Constant-time comparison of two hex digests of equal length.
pub fn digest_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

//! The vault's cryptography: XChaCha20-Poly1305 with a fresh random 24-byte nonce per seal
//! (no counters: two processes or a restored backup would reuse them), and associated data
//! binding every ciphertext to its purpose, tenant and name.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::AeadCore;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::aead::rand_core::RngCore;
use zeroize::Zeroizing;

/// Bytes in a key (master or data key).
pub(crate) const KEY_LEN: usize = 32;
/// Bytes in an XChaCha20 nonce.
pub(crate) const NONCE_LEN: usize = 24;

/// A master or data key, wiped when dropped.
pub(crate) type KeyBytes = Zeroizing<[u8; KEY_LEN]>;

/// What was sealed in the master key check.
const CHECK_PLAINTEXT: &[u8] = b"cambot vault master key check";

/// What a ciphertext is for; part of its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Secret,
    /// Key material sealed for another part of cambot (web signing keys): never a secret.
    KeyMaterial,
    Dek,
    Check,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Secret => b"cambot.vault.secret.v1",
            Self::KeyMaterial => b"cambot.vault.key.v1",
            Self::Dek => b"cambot.vault.dek.v1",
            Self::Check => b"cambot.vault.check.v1",
        }
    }
}

/// `tag ‖ u32 len ‖ tenant ‖ u32 len ‖ name`: length prefixes, because joined strings are
/// ambiguous when names may contain the separator.
pub(crate) fn aad(purpose: Purpose, tenant: &str, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(purpose.tag().len() + 8 + tenant.len() + name.len());
    out.extend_from_slice(purpose.tag());
    for part in [tenant, name] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// 32 bytes from the OS random generator.
pub(crate) fn random_key() -> KeyBytes {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut_slice());
    key
}

/// Seals `plaintext` under `key`: `(nonce, ciphertext ‖ tag)`. `None` only if the cipher
/// refuses (a message beyond its length limit).
pub(crate) fn seal(key: &KeyBytes, aad: &[u8], plaintext: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .ok()?;
    Some((nonce.to_vec(), ct))
}

/// Opens what [`seal`] made; `None` when the key, the associated data, the nonce or the bytes
/// are not the ones it was sealed with.
pub(crate) fn open(
    key: &KeyBytes,
    aad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != NONCE_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// The master key check stored in `vault_meta`: `nonce ‖ ciphertext` of a constant.
pub(crate) fn make_check(master: &KeyBytes) -> Option<Vec<u8>> {
    let (mut nonce, ct) = seal(master, &aad(Purpose::Check, "", ""), CHECK_PLAINTEXT)?;
    nonce.extend_from_slice(&ct);
    Some(nonce)
}

/// Whether `master` opens the stored check.
pub(crate) fn opens_check(master: &KeyBytes, check: &[u8]) -> bool {
    if check.len() < NONCE_LEN {
        return false;
    }
    let (nonce, ct) = check.split_at(NONCE_LEN);
    open(master, &aad(Purpose::Check, "", ""), nonce, ct)
        .is_some_and(|plain| plain.as_slice() == CHECK_PLAINTEXT)
}

/// Wraps a tenant's data key under the master key: `(nonce, wrapped)`.
pub(crate) fn wrap_dek(
    master: &KeyBytes,
    tenant: &str,
    dek: &KeyBytes,
) -> Option<(Vec<u8>, Vec<u8>)> {
    seal(master, &aad(Purpose::Dek, tenant, ""), dek.as_ref())
}

/// Unwraps a tenant's data key; `None` when the master key or the tenant is not the one it was
/// wrapped for.
pub(crate) fn unwrap_dek(
    master: &KeyBytes,
    tenant: &str,
    nonce: &[u8],
    wrapped: &[u8],
) -> Option<KeyBytes> {
    let plain = open(master, &aad(Purpose::Dek, tenant, ""), nonce, wrapped)?;
    let bytes: [u8; KEY_LEN] = plain.as_slice().try_into().ok()?;
    Some(Zeroizing::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ciphertext_opens_only_with_its_own_tenant_and_name() {
        let dek = random_key();
        let (nonce, ct) = seal(&dek, &aad(Purpose::Secret, "acme", "api"), b"s3cret").unwrap();
        let opened = open(&dek, &aad(Purpose::Secret, "acme", "api"), &nonce, &ct).unwrap();
        assert_eq!(opened.as_slice(), b"s3cret");
        for (tenant, name) in [
            ("beta", "api"),
            ("acme", "api2"),
            ("acmeapi", ""),
            ("", "acmeapi"),
        ] {
            assert!(open(&dek, &aad(Purpose::Secret, tenant, name), &nonce, &ct).is_none());
        }
        assert!(open(&dek, &aad(Purpose::Dek, "acme", "api"), &nonce, &ct).is_none());
        assert!(
            open(
                &random_key(),
                &aad(Purpose::Secret, "acme", "api"),
                &nonce,
                &ct
            )
            .is_none()
        );
    }

    #[test]
    fn every_seal_draws_a_fresh_nonce() {
        let key = random_key();
        let a = seal(&key, b"", b"x").unwrap();
        let b = seal(&key, b"", b"x").unwrap();
        assert_ne!(a.0, b.0);
        assert_ne!(a.1, b.1);
    }

    #[test]
    fn the_check_opens_only_with_its_master_key() {
        let (k1, k2) = (random_key(), random_key());
        let check = make_check(&k1).unwrap();
        assert!(opens_check(&k1, &check));
        assert!(!opens_check(&k2, &check));
        assert!(!opens_check(&k1, &check[..10]));
        let dek = random_key();
        let (n, w) = wrap_dek(&k1, "acme", &dek).unwrap();
        assert_eq!(
            unwrap_dek(&k1, "acme", &n, &w).unwrap().as_slice(),
            dek.as_slice()
        );
        assert!(unwrap_dek(&k1, "beta", &n, &w).is_none());
        assert!(unwrap_dek(&k2, "acme", &n, &w).is_none());
    }
}

//! Web chat passwords: Argon2id PHC strings, checked on one dedicated thread.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::mpsc::SyncSender;

use argon2::Argon2;
use argon2::PasswordHash;
use argon2::PasswordHasher;
use argon2::PasswordVerifier;
use argon2::password_hash::SaltString;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(#[source] argon2::password_hash::Error),
    #[error("cannot start the password thread: {0}")]
    Thread(#[source] Arc<std::io::Error>),
    /// Too many sign-ins are waiting; the caller should retry later.
    #[error("too many password checks waiting")]
    Busy,
    #[error("the password thread stopped")]
    Stopped,
}

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane) and a random
/// salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// Checks a password against a PHC string (false for a malformed hash).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Most Argon2 memory a stored hash may ask for (blocks of 1 KiB): 256 MiB.
const MAX_ARGON2_BLOCKS: usize = 256 * 1024;

/// [`verify_password`] with caller-owned Argon2 working memory, reused across checks (the
/// password thread keeps one buffer instead of allocating 19 MiB per sign-in).
pub fn verify_password_with(password: &str, phc: &str, blocks: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (argon2::Params::try_from(&hash), hash.salt, hash.hash)
    else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let needed = params.block_count();
    if needed > MAX_ARGON2_BLOCKS {
        return false;
    }
    if blocks.len() < needed {
        blocks.resize(needed, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..needed])
        .is_err()
    {
        return false;
    }
    // `Output` compares in constant time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// A hash to verify against when the user does not exist, so that an unknown name takes as
/// long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("cambot-dummy-password").unwrap_or_default())
}

type PasswordJob = Box<dyn FnOnce(&mut Vec<argon2::Block>) + Send>;

/// Sign-ins waiting for the password thread; more are refused (503) rather than queued.
const PASSWORD_QUEUE: usize = 64;

/// Every password check runs on one dedicated thread. Argon2id needs 19 MiB per check: on the
/// blocking pool, parallel checks would multiply that (a cheap memory attack), and each pool
/// thread's allocator arena would keep its 19 MiB afterwards. The thread lives as long as the
/// process and only ever waits on its queue.
fn password_worker() -> Result<&'static SyncSender<PasswordJob>, PasswordError> {
    static WORKER: OnceLock<Result<SyncSender<PasswordJob>, Arc<std::io::Error>>> = OnceLock::new();
    WORKER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<PasswordJob>(PASSWORD_QUEUE);
            std::thread::Builder::new()
                .name("cambot-password".into())
                .spawn(move || {
                    let mut blocks = Vec::new();
                    while let Ok(job) = rx.recv() {
                        job(&mut blocks);
                    }
                })
                .map(|_| tx)
                .map_err(Arc::new)
        })
        .as_ref()
        .map_err(|e| PasswordError::Thread(Arc::clone(e)))
}

async fn on_password_thread<T: Send + 'static>(
    f: impl FnOnce(&mut Vec<argon2::Block>) -> T + Send + 'static,
) -> Result<T, PasswordError> {
    let worker = password_worker()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    worker
        .try_send(Box::new(move |blocks| {
            let _ = tx.send(f(blocks));
        }))
        .map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => PasswordError::Busy,
            std::sync::mpsc::TrySendError::Disconnected(_) => PasswordError::Stopped,
        })?;
    rx.await.map_err(|_| PasswordError::Stopped)
}

/// Checks `password` against a stored PHC string on the password thread. With no stored hash
/// (unknown user) it checks against a dummy hash and answers false, so the caller cannot be
/// told apart by timing.
pub(crate) async fn check_password(
    password: String,
    stored: Option<String>,
) -> Result<bool, PasswordError> {
    on_password_thread(move |blocks| match stored {
        Some(phc) => verify_password_with(&password, &phc, blocks),
        None => {
            verify_password_with(&password, dummy_hash(), blocks);
            false
        }
    })
    .await
}

#[cfg(test)]
#[path = "passwords_tests.rs"]
mod tests;

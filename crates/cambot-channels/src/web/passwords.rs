//! Web chat passwords: Argon2id PHC strings, checked on a small pool of dedicated threads.

use std::sync::Arc;
use std::sync::Mutex;
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

/// [`verify_password`] with caller-owned Argon2 working memory, reused across checks (each
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

/// The password threads: a fixed number of dedicated threads sharing one short queue. Argon2id
/// needs 19 MiB per check: on the blocking pool, parallel checks would multiply that (a cheap
/// memory attack), and each pool thread's allocator arena would keep its 19 MiB afterwards. A
/// full queue refuses the check ([`PasswordError::Busy`]) instead of letting waits grow. The
/// threads end when the pool is dropped (their queue closes).
pub(crate) struct PasswordPool {
    queue: SyncSender<PasswordJob>,
    workers: usize,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPool")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl PasswordPool {
    /// `workers` threads (0: one per core) and a queue of `queue` waiting checks.
    pub(crate) fn new(workers: usize, queue: usize) -> Result<Self, PasswordError> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            workers
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<PasswordJob>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("cambot-password-{i}"))
                .spawn(move || {
                    let mut blocks = Vec::new();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        let Ok(job) = job else { return };
                        job(&mut blocks);
                    }
                })
                .map_err(|e| PasswordError::Thread(Arc::new(e)))?;
        }
        Ok(Self { queue: tx, workers })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<argon2::Block>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue
            .try_send(Box::new(move |blocks| {
                let _ = tx.send(f(blocks));
            }))
            .map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(_) => PasswordError::Busy,
                std::sync::mpsc::TrySendError::Disconnected(_) => PasswordError::Stopped,
            })?;
        rx.await.map_err(|_| PasswordError::Stopped)
    }

    /// Checks `password` against a stored PHC string on a password thread. With no stored hash
    /// (unknown user) it checks against a dummy hash and answers false, so the caller cannot be
    /// told apart by timing.
    pub(crate) async fn check(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.run(move |blocks| match stored {
            Some(phc) => verify_password_with(&password, &phc, blocks),
            None => {
                verify_password_with(&password, dummy_hash(), blocks);
                false
            }
        })
        .await
    }
}

#[cfg(test)]
#[path = "passwords_tests.rs"]
mod tests;

//! Access tokens (JWT) and refresh tokens.
//!
//! cambot's own access tokens are EdDSA (Ed25519) JWTs with a pinned algorithm: the header must
//! say `EdDSA` and name a `kid` of a stored key, the key's tenant must equal the `tid` claim, and
//! `iss`, `aud`, `exp`, `iat`, `sub`, `tid`, `jti` are all required; an `nbf` (own or external
//! token, see `web::external`) must not be in the future (both with [`LEEWAY_SECS`] of clock skew). Each tenant has its own
//! keys; a key is replaced after `key_rotation_secs` and deleted once no token it signed can
//! still be valid. A private key is stored sealed by the host's [`KeySealer`] (bound to the
//! tenant and [`signing_key_name`]), never in plaintext. Refresh tokens are 256 random bits,
//! stored only as SHA-256 hashes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cambot_core::SigningKeyRow;
use cambot_core::StoreError;
use cambot_core::UserStore;
use cambot_protocol::TenantId;
use jsonwebtoken::Algorithm;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::Header;
use jsonwebtoken::Validation;
use ring::signature::Ed25519KeyPair;
use ring::signature::KeyPair;
use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;

use crate::KeySealer;
use crate::error::ChannelError;
use crate::error::HostError;
use crate::locks;
use crate::web::config::WebConfig;
use crate::web::external::Issuers;

/// Clock skew tolerated on `exp`, `nbf` and `iat` (seconds).
pub const LEEWAY_SECS: u64 = 30;
/// Longest lifetime (`exp - iat`) an accepted token may claim (seconds).
const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;
/// The only algorithm of cambot's own keys; a stored key of another algorithm is ignored.
const KEY_ALGORITHM: &str = "EdDSA";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    pub exp: u64,
    pub iat: u64,
    #[serde(default)]
    pub jti: String,
}

/// Who a valid access token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant: TenantId,
    pub user: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued by a configured external issuer (`user` is then `<iss>|<sub>`).
    pub external: bool,
}

/// Why a token was refused. Every variant is a 401 to the client; the variant is for logs.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token or header")]
    Malformed,
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("unknown key id")]
    UnknownKey,
    #[error("unknown issuer")]
    UnknownIssuer,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("invalid token: {0}")]
    Jwt(#[source] jsonwebtoken::errors::Error),
    #[error("token issued in the future")]
    FutureIat,
    #[error("token lifetime too long")]
    Lifetime,
    #[error("token tenant does not match its key")]
    TenantMismatch,
    #[error("invalid user or tenant in token")]
    BadSubject,
    #[error("reading or storing signing keys: {0}")]
    Store(#[from] StoreError),
    #[error("signing key {kid}: {source}")]
    Sealing {
        kid: String,
        #[source]
        source: HostError,
    },
}

/// The name a tenant's signing key `kid` is sealed under (associated data of its ciphertext).
pub fn signing_key_name(kid: &str) -> String {
    format!("web-signing-key.{kid}")
}

struct Signer {
    kid: String,
    created_ms: i64,
    key: EncodingKey,
}

/// Issues and verifies access tokens.
pub struct Tokens {
    store: Arc<dyn UserStore>,
    sealer: Arc<dyn KeySealer>,
    issuer: String,
    audience: String,
    access_ttl_secs: u64,
    rotation_ms: i64,
    signers: Mutex<HashMap<TenantId, Arc<Signer>>>,
    verifiers: Mutex<HashMap<String, (TenantId, Arc<DecodingKey>)>>,
    external: Issuers,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

pub fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// 256 random bits, base64url: a refresh token.
pub fn new_refresh_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// 128 random bits as 32 hex characters.
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl Tokens {
    pub fn new(
        store: Arc<dyn UserStore>,
        sealer: Arc<dyn KeySealer>,
        config: &WebConfig,
    ) -> Result<Self, ChannelError> {
        let external = Issuers::load(&config.all_issuers())?;
        Ok(Self {
            store,
            sealer,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl_secs: config.access_token_ttl_secs.max(1),
            rotation_ms: i64::try_from(config.key_rotation_secs.max(1))
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            signers: Mutex::new(HashMap::new()),
            verifiers: Mutex::new(HashMap::new()),
            external,
        })
    }

    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// Issues an access token for a user of a tenant. Returns the token and its expiry.
    pub async fn issue(&self, tenant: &TenantId, user: &str) -> Result<(String, u64), TokenError> {
        let signer = self.signer(tenant).await?;
        let now = now_secs();
        let exp = now + self.access_ttl_secs;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_owned(),
            tid: Some(tenant.as_str().to_owned()),
            exp,
            iat: now,
            jti: random_id(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &signer.key).map_err(TokenError::Jwt)?;
        Ok((token, exp))
    }

    /// The tenant's current signer, rotating when it is older than the rotation period.
    async fn signer(&self, tenant: &TenantId) -> Result<Arc<Signer>, TokenError> {
        let now = now_ms();
        let fresh = |s: &Signer| now - s.created_ms < self.rotation_ms;
        let cached = locks::lock("token signers", &self.signers)
            .get(tenant)
            .cloned();
        if let Some(s) = cached
            && fresh(&s)
        {
            return Ok(s);
        }
        let stored = self.store.signing_keys(tenant).await?;
        let newest = stored
            .into_iter()
            .find(|k| k.algorithm == KEY_ALGORITHM)
            .filter(|k| now - k.created_ms < self.rotation_ms);
        let signer = match newest {
            Some(k) => {
                let key = if k.sealed {
                    let name = signing_key_name(&k.kid);
                    let opened = self
                        .sealer
                        .open(tenant, &name, &k.private_key)
                        .await
                        .map_err(|source| TokenError::Sealing {
                            kid: k.kid.clone(),
                            source,
                        })?;
                    EncodingKey::from_ed_der(&opened)
                } else {
                    // A row from before the vault, until the daemon seals it at its next start.
                    EncodingKey::from_ed_der(&k.private_key)
                };
                Signer {
                    kid: k.kid,
                    created_ms: k.created_ms,
                    key,
                }
            }
            None => {
                let (k, key) = self.new_key(tenant, now).await?;
                self.store.add_signing_key(&k).await?;
                // Keep old keys while tokens they signed may still be valid.
                let keep_ms = i64::try_from(self.access_ttl_secs + LEEWAY_SECS)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000);
                self.store
                    .delete_signing_keys(tenant, now - self.rotation_ms - keep_ms, &k.kid)
                    .await?;
                tracing::info!(tenant = %tenant, kid = %k.kid, "web: new signing key");
                Signer {
                    kid: k.kid,
                    created_ms: k.created_ms,
                    key,
                }
            }
        };
        let signer = Arc::new(signer);
        locks::lock("token signers", &self.signers).insert(tenant.clone(), Arc::clone(&signer));
        Ok(signer)
    }

    /// Verifies an access token (own or external) and returns who it speaks for. It does not
    /// check whether the user is disabled: the caller does, on every request.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg == Algorithm::EdDSA
            && let Some(kid) = header.kid.as_deref()
            && let Some((tenant, key)) = self.local_key(kid).await?
        {
            return self.verify_local(token, &tenant, &key);
        }
        if !self.external.is_empty() {
            return self.external.verify(token, &header).await;
        }
        if header.alg == Algorithm::EdDSA {
            Err(TokenError::UnknownKey)
        } else {
            Err(TokenError::Algorithm)
        }
    }

    async fn local_key(
        &self,
        kid: &str,
    ) -> Result<Option<(TenantId, Arc<DecodingKey>)>, TokenError> {
        let cached = locks::lock("token verifiers", &self.verifiers)
            .get(kid)
            .cloned();
        if let Some(hit) = cached {
            return Ok(Some(hit));
        }
        let Some(stored) = self
            .store
            .signing_key(kid)
            .await?
            .filter(|k| k.algorithm == KEY_ALGORITHM)
        else {
            return Ok(None);
        };
        let entry = (
            stored.tenant.clone(),
            Arc::new(DecodingKey::from_ed_der(&stored.public_key)),
        );
        {
            let mut m = locks::lock("token verifiers", &self.verifiers);
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(kid.to_owned(), entry.clone());
        }
        Ok(Some(entry))
    }

    fn verify_local(
        &self,
        token: &str,
        key_tenant: &TenantId,
        key: &DecodingKey,
    ) -> Result<Identity, TokenError> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.algorithms = vec![Algorithm::EdDSA];
        v.leeway = LEEWAY_SECS;
        // A token that is not valid yet (`nbf` in the future) is refused; `nbf` is optional.
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(TokenError::Jwt)?;
        let c = data.claims;
        check_times(c.iat, c.exp)?;
        if c.jti.is_empty() {
            return Err(TokenError::Invalid("missing jti".into()));
        }
        let tid = c.tid.ok_or(TokenError::TenantMismatch)?;
        if tid != key_tenant.as_str() {
            return Err(TokenError::TenantMismatch);
        }
        if !valid_user_name(&c.sub) {
            return Err(TokenError::BadSubject);
        }
        Ok(Identity {
            tenant: key_tenant.clone(),
            user: c.sub,
            exp: c.exp,
            external: false,
        })
    }

    /// Forgets cached keys (tests rotate keys under a running channel).
    pub fn clear_caches(&self) {
        locks::lock("token signers", &self.signers).clear();
        locks::lock("token verifiers", &self.verifiers).clear();
    }
}

pub(crate) fn check_times(iat: u64, exp: u64) -> Result<(), TokenError> {
    if iat > now_secs() + LEEWAY_SECS {
        return Err(TokenError::FutureIat);
    }
    if exp.saturating_sub(iat) > MAX_TOKEN_LIFETIME_SECS {
        return Err(TokenError::Lifetime);
    }
    Ok(())
}

/// User names: 1-64 characters from `A-Z a-z 0-9 _ . @ -`, starting with a letter or digit.
/// No `:` (it separates the parts of a web chat jid), nothing path-like, and no `|` (external
/// users are `<iss>|<sub>`, so no local name can be one).
pub fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
}

impl Tokens {
    /// A new Ed25519 key: its row (PKCS#8 private key sealed, raw 32-byte public key) and
    /// the key to sign with.
    async fn new_key(
        &self,
        tenant: &TenantId,
        now_ms: i64,
    ) -> Result<(SigningKeyRow, EncodingKey), TokenError> {
        let failed = || TokenError::Invalid("key generation failed".into());
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed())?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| failed())?;
        let kid = random_id();
        let sealed = self
            .sealer
            .seal(tenant, &signing_key_name(&kid), pkcs8.as_ref())
            .await
            .map_err(|source| TokenError::Sealing {
                kid: kid.clone(),
                source,
            })?;
        let row = SigningKeyRow {
            kid,
            tenant: tenant.clone(),
            algorithm: KEY_ALGORITHM.into(),
            private_key: sealed,
            public_key: pair.public_key().as_ref().to_vec(),
            created_ms: now_ms,
            sealed: true,
        };
        Ok((row, EncodingKey::from_ed_der(pkcs8.as_ref())))
    }
}

//! Access tokens of external identity providers (`[[channels.web.issuers]]`).
//!
//! The token's unverified `iss` only selects which configured issuer to try; the signature is
//! then checked with that issuer's keys alone and `iss` is validated against it, so a token
//! claiming issuer X but signed by issuer Y's key is refused. The tenant is the issuer's; a
//! `tid` claim is never read. The user is `<iss>|<sub>`: local user names cannot contain `|`,
//! so an external identity never names a local user.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cambot_protocol::TenantId;
use jsonwebtoken::Algorithm;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::Header;
use jsonwebtoken::Validation;
use jsonwebtoken::jwk::AlgorithmParameters;
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::jwk::PublicKeyUse;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::ChannelError;
use crate::locks;
use crate::web::config::IssuerConfig;
use crate::web::tokens::Identity;
use crate::web::tokens::LEEWAY_SECS;
use crate::web::tokens::TokenError;
use crate::web::tokens::check_times;
use crate::web::tokens::valid_user_name;

/// Largest JWKS document accepted (bytes).
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
const MAX_JWKS_KEYS: usize = 64;
/// A JWKS fetch (connect, request and body together) gives up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Separates the issuer from the subject in an external user name.
pub const ISSUER_SEPARATOR: char = '|';

/// One verification key and the algorithms it may verify.
struct Key {
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// Keys by `kid`; a key without one (key file, shared secret) is under the empty kid.
type KeyMap = HashMap<String, Arc<Key>>;

/// Claims read from an external token (`aud` may be a list there; `tid` is not read).
#[derive(Debug, Deserialize)]
struct ExternalClaims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
}

/// The configured external issuers, by `iss`.
pub(crate) struct Issuers {
    by_issuer: HashMap<String, Issuer>,
}

struct Issuer {
    issuer: String,
    audience: String,
    tenant: TenantId,
    algorithms: Vec<Algorithm>,
    keys: Keys,
}

enum Keys {
    Fixed(KeyMap),
    Remote(Jwks),
}

/// A JWKS endpoint's keys, fetched on first use, on an unknown `kid` (rate-limited), and when
/// the copy is too old.
struct Jwks {
    url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    max_age: Duration,
    state: Mutex<JwksState>,
    /// One fetch at a time; a caller that waited re-reads what the other one fetched.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    keys: Arc<KeyMap>,
    /// Last fetch attempt (successful or not): what the rate limit counts from.
    attempted: Option<Instant>,
    /// Last successful fetch.
    loaded: Option<Instant>,
}

impl Issuers {
    /// Loads every issuer's fixed keys and prepares the JWKS clients. The config has been
    /// validated ([`crate::web::WebConfig::validate`]).
    pub(crate) fn load(configs: &[IssuerConfig]) -> Result<Self, ChannelError> {
        let mut by_issuer = HashMap::new();
        for cfg in configs {
            let issuer = Issuer {
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
                tenant: cfg.tenant.clone(),
                algorithms: cfg.accepted_algorithms(),
                keys: load_keys(cfg)?,
            };
            by_issuer.insert(cfg.issuer.clone(), issuer);
        }
        Ok(Self { by_issuer })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    /// Verifies an external token: the issuer its `iss` names, that issuer's key, algorithm,
    /// audience and times. The identity's tenant is the issuer's.
    pub(crate) async fn verify(
        &self,
        token: &str,
        header: &Header,
    ) -> Result<Identity, TokenError> {
        let claimed = unverified_issuer(token).ok_or(TokenError::Malformed)?;
        let issuer = self
            .by_issuer
            .get(&claimed)
            .ok_or(TokenError::UnknownIssuer)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.as_deref().unwrap_or_default();
        let key = match &issuer.keys {
            Keys::Fixed(keys) => keys.get(kid).or_else(|| keys.get("")).cloned(),
            Keys::Remote(jwks) => jwks.key(kid).await,
        }
        .ok_or(TokenError::UnknownKey)?;
        if !key.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = LEEWAY_SECS;
        // A token that is not valid yet (`nbf` in the future) is refused; `nbf` is optional.
        v.validate_nbf = true;
        v.set_issuer(&[&issuer.issuer]);
        v.set_audience(&[&issuer.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<ExternalClaims>(token, &key.key, &v).map_err(TokenError::Jwt)?;
        let c = data.claims;
        let iat = c
            .iat
            .ok_or_else(|| TokenError::Invalid("missing iat".into()))?;
        check_times(iat, c.exp)?;
        // The subject's alphabet has no `|`, so `<iss>|<sub>` splits one way only.
        if !valid_user_name(&c.sub) {
            return Err(TokenError::BadSubject);
        }
        Ok(Identity {
            tenant: issuer.tenant.clone(),
            user: format!("{}{ISSUER_SEPARATOR}{}", issuer.issuer, c.sub),
            exp: c.exp,
            external: true,
        })
    }
}

/// The `iss` claim of a token, not verified: it only chooses which issuer's keys to try.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok().map(|c| c.iss)
}

fn load_keys(cfg: &IssuerConfig) -> Result<Keys, ChannelError> {
    let key = format!("channels.web.issuers ({:?})", cfg.issuer);
    let failed =
        |m: String, e: Box<dyn std::error::Error + Send + Sync>| ChannelError::ConfigSource {
            context: format!("{key}: {m}"),
            source: e,
        };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| failed(format!("reading {}", path.display()), e.into()))
    };
    let mut keys = KeyMap::new();
    if let Some(url) = &cfg.jwks_url {
        let client = jwks_client(url).map_err(|e| failed("building the JWKS client".into(), e))?;
        return Ok(Keys::Remote(Jwks {
            url: url.clone(),
            client,
            min_refresh: Duration::from_secs(cfg.jwks_min_refresh_secs),
            max_age: Duration::from_secs(cfg.jwks_max_age_secs),
            state: Mutex::new(JwksState::default()),
            fetching: tokio::sync::Mutex::new(()),
        }));
    } else if let Some(path) = &cfg.jwks_file {
        let text = read(path)?;
        keys = parse_jwks(&text)
            .map_err(|m| ChannelError::Config(format!("{key}: {}: {m}", path.display())))?;
    } else if let Some(path) = &cfg.key_file {
        let pem = read(path)?;
        let parsed = DecodingKey::from_rsa_pem(&pem)
            .map(|k| (k, RSA_ALGORITHMS.to_vec()))
            .or_else(|_| {
                DecodingKey::from_ec_pem(&pem)
                    .map(|k| (k, vec![Algorithm::ES256, Algorithm::ES384]))
            })
            .or_else(|_| DecodingKey::from_ed_pem(&pem).map(|k| (k, vec![Algorithm::EdDSA])))
            .map_err(|e| {
                failed(
                    format!("{} is not a PEM public key", path.display()),
                    e.into(),
                )
            })?;
        keys.insert(
            String::new(),
            Arc::new(Key {
                key: parsed.0,
                algorithms: parsed.1,
            }),
        );
    } else if cfg.shared_secret_file.is_some() || cfg.secret.is_some() {
        let secret = match (&cfg.shared_secret_file, &cfg.resolved_secret) {
            (Some(path), _) => read(path)?,
            (None, Some(resolved)) => resolved.expose().to_vec(),
            (None, None) => {
                return Err(ChannelError::Config(format!(
                    "{key}: secret {:?} was not looked up in tenant {}'s vault",
                    cfg.secret
                        .as_deref()
                        .and_then(|s| s.strip_prefix("secret:"))
                        .unwrap_or(""),
                    cfg.tenant
                )));
            }
        };
        let secret = secret.trim_ascii();
        if secret.len() < 32 {
            return Err(ChannelError::Config(format!(
                "{key}: the shared secret must be at least 32 bytes"
            )));
        }
        keys.insert(
            String::new(),
            Arc::new(Key {
                key: DecodingKey::from_secret(secret),
                algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            }),
        );
    }
    if keys.is_empty() {
        return Err(ChannelError::Config(format!("{key}: no usable keys")));
    }
    Ok(Keys::Fixed(keys))
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The signature keys of a JWKS document. Keys for encryption, symmetric keys and unsupported
/// curves are skipped (identity providers publish those too); none usable is an error.
fn parse_jwks(bytes: &[u8]) -> Result<KeyMap, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = KeyMap::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let by_type = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => continue,
        };
        // A key that names its algorithm verifies that one only.
        let algorithms = match &jwk.common.key_algorithm {
            Some(named) => match named.to_string().parse::<Algorithm>() {
                Ok(a) if by_type.contains(&a) => vec![a],
                _ => continue,
            },
            None => by_type,
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        keys.insert(kid, Arc::new(Key { algorithms, key }));
        if keys.len() >= MAX_JWKS_KEYS {
            break;
        }
    }
    if keys.is_empty() {
        return Err("no usable signature keys".into());
    }
    Ok(keys)
}

/// A client that follows no redirect (the URL's https-or-loopback check must hold for what is
/// actually fetched) and bypasses proxies for a loopback endpoint.
fn jwks_client(url: &str) -> Result<reqwest::Client, Box<dyn std::error::Error + Send + Sync>> {
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if url.starts_with("http:") {
        builder = builder.no_proxy();
    }
    Ok(builder.build()?)
}

impl Jwks {
    /// The key named `kid`, fetching the set when it is missing, unknown or stale and the last
    /// attempt is at least `min_refresh` ago. A stale set keeps serving while fetches fail.
    async fn key(&self, kid: &str) -> Option<Arc<Key>> {
        let (found, attempted) = self.lookup(kid);
        if found.is_some() {
            return found;
        }
        let _one = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        let (found, now_attempted) = self.lookup(kid);
        if found.is_some() || now_attempted != attempted {
            return found;
        }
        if attempted.is_some_and(|t| t.elapsed() < self.min_refresh) {
            tracing::debug!(url = %self.url, kid, "web: JWKS refetch rate-limited");
            return None;
        }
        let fetched = self.fetch().await;
        let mut state = locks::lock("jwks", &self.state);
        state.attempted = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "web: fetched the JWKS");
                state.keys = Arc::new(keys);
                state.loaded = state.attempted;
            }
            Err(e) => tracing::warn!(url = %self.url, error = %e, "web: fetching the JWKS failed"),
        }
        state.keys.get(kid).cloned()
    }

    /// The key if the set is loaded and fresh enough; and when the last fetch was tried.
    fn lookup(&self, kid: &str) -> (Option<Arc<Key>>, Option<Instant>) {
        let state = locks::lock("jwks", &self.state);
        let fresh = state.loaded.is_some_and(|t| t.elapsed() < self.max_age);
        let key = state.keys.get(kid).cloned();
        // A stale copy still answers when a refetch is not due yet.
        let due = state
            .attempted
            .is_none_or(|t| t.elapsed() >= self.min_refresh);
        ((fresh || !due).then_some(key).flatten(), state.attempted)
    }

    async fn fetch(&self) -> Result<KeyMap, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

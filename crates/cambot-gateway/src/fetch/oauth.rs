//! A fetch hop with the run tenant's credentials, and the OAuth refresh of an access token,
//! both on the host: the sandbox never sees a token, only the answer.
//!
//! The refresh posts `grant_type=refresh_token` to the rule's token endpoint through the same
//! checked, pinned client as every fetch (the endpoint's origin counts as allowed because the
//! operator configured it), stores the new access token (and refresh token, if one came back)
//! in the vault, and the hop is retried once. Refreshes of one tenant's rule run one at a time;
//! a fetch that waited finds the token already refreshed and uses it.

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use cambot_protocol::TenantId;
use reqwest::StatusCode;

use super::FetchCredential;
use super::FetchError;
use super::Outbound;
use super::Target;
use crate::gateway::Gateway;
use crate::upstream::Secret;

/// A token this close to its expiry is refreshed before use.
const EXPIRY_MARGIN_MS: i64 = 30_000;

/// Largest token endpoint answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// The fields of a token endpoint's answer this uses (RFC 6749 section 5.1).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn expired(expires_ms: Option<i64>) -> bool {
    expires_ms.is_some_and(|at| at <= now_ms().saturating_add(EXPIRY_MARGIN_MS))
}

impl Gateway {
    /// Sends one hop with the headers of every rule of `tenant` for exactly this hop's origin.
    /// A 401 with an OAuth rule refreshes its token and retries once.
    pub(super) async fn send_hop(
        &self,
        tenant: &TenantId,
        target: &Target,
    ) -> Result<reqwest::Response, FetchError> {
        let rules: Vec<&FetchCredential> = self
            .fetch_credentials
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(|r| r.origin().allows(&target.url))
            .collect();
        if rules.is_empty() {
            return self.send(target, Outbound::default()).await;
        }
        let mut tokens = Vec::with_capacity(rules.len());
        for rule in &rules {
            tokens.push(self.access_token(tenant, rule).await?);
        }
        let resp = self
            .send(target, with_headers(tenant, &rules, &tokens)?)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED || rules.iter().all(|r| r.oauth.is_none()) {
            return Ok(resp);
        }
        drop(resp);
        tracing::info!(%tenant, url = %target.url, "fetch answered 401; refreshing its OAuth token");
        for (rule, token) in rules.iter().zip(tokens.iter_mut()) {
            if rule.oauth.is_some() {
                *token = self.refresh(tenant, rule, token).await?;
            }
        }
        // Once only: a second 401 goes back to the agent as it is.
        self.send(target, with_headers(tenant, &rules, &tokens)?)
            .await
    }

    /// The rule's access token, refreshed first when it has expired.
    async fn access_token(
        &self,
        tenant: &TenantId,
        rule: &FetchCredential,
    ) -> Result<Secret, FetchError> {
        let found = self.tenant_secret(tenant, rule.secret()).await?;
        if rule.oauth.is_some() && expired(found.expires_ms) {
            return self.refresh(tenant, rule, &found.value).await;
        }
        Ok(found.value)
    }

    fn refresh_lock(&self, tenant: &TenantId, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .refresh_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry((tenant.clone(), name.to_owned())).or_default())
    }

    /// A fresh access token for `rule` in place of `stale`, refreshed by the token endpoint
    /// unless another fetch did so while this one waited.
    async fn refresh(
        &self,
        tenant: &TenantId,
        rule: &FetchCredential,
        stale: &Secret,
    ) -> Result<Secret, FetchError> {
        let Some(oauth) = &rule.oauth else {
            return Ok(stale.clone());
        };
        let name = rule.secret();
        let lock = self.refresh_lock(tenant, name);
        let _one_at_a_time = lock.lock().await;
        let current = self
            .secrets
            .secret(tenant, name)
            .await
            .map_err(|e| self.vault_error(tenant, name, e))?;
        if let Some(found) = current
            && found.value != *stale
            && !expired(found.expires_ms)
        {
            return Ok(found.value);
        }
        let refresh = self
            .tenant_secret(tenant, &oauth.refresh_token)
            .await?
            .value;
        let client_secret = match &oauth.client_secret {
            Some(n) => Some(self.tenant_secret(tenant, n).await?.value),
            None => None,
        };
        let what = format!(
            "the OAuth refresh of tenant {tenant}'s '{name}' at {}",
            oauth.token_url
        );
        let target = match self
            .check(oauth.token_url.as_str(), None, Some(&oauth.token_origin))
            .await
        {
            Err(FetchError::Refused(why)) => {
                return Err(FetchError::OAuth(format!("{what} was refused: {why}")));
            }
            other => other?,
        };
        let form = {
            // The serializer is not Send: it must be gone before the next await.
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", refresh.expose())
                .append_pair("client_id", &oauth.client_id);
            if let Some(client_secret) = &client_secret {
                form.append_pair("client_secret", client_secret.expose());
            }
            zeroize::Zeroizing::new(form.finish())
        };
        self.stats.oauth_refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%tenant, secret = name, token_url = %oauth.token_url, "refreshing an OAuth access token");
        let mut resp = self
            .send(
                &target,
                Outbound {
                    headers: HeaderMap::new(),
                    form: Some(form),
                },
            )
            .await?;
        let status = resp.status();
        let mut body = zeroize::Zeroizing::new(Vec::new());
        while let Some(chunk) = resp.chunk().await.map_err(|source| FetchError::Request {
            url: oauth.token_url.to_string(),
            source,
        })? {
            if body.len() + chunk.len() > MAX_TOKEN_ANSWER {
                return Err(FetchError::OAuth(format!(
                    "{what}: the answer exceeds {MAX_TOKEN_ANSWER} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            tracing::warn!(%tenant, secret = name, status = status.as_u16(), "OAuth refresh failed");
            return Err(FetchError::OAuth(format!(
                "{what} answered {}{}",
                status.as_u16(),
                error_code(&body)
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| FetchError::OAuth(format!("{what} answered without an access_token")))?;
        let expires_ms = answer
            .expires_in
            .map(|secs| now_ms().saturating_add(secs.saturating_mul(1000)));
        let access = Secret::new(answer.access_token);
        let store_err = |e| FetchError::from(self.vault_error(tenant, name, e));
        self.secrets
            .store(tenant, name, access.clone(), expires_ms)
            .await
            .map_err(store_err)?;
        if let Some(new_refresh) = answer.refresh_token {
            self.secrets
                .store(tenant, &oauth.refresh_token, Secret::new(new_refresh), None)
                .await
                .map_err(store_err)?;
        }
        Ok(access)
    }
}

/// The rules' headers with their tokens.
fn with_headers(
    tenant: &TenantId,
    rules: &[&FetchCredential],
    tokens: &[Secret],
) -> Result<Outbound, FetchError> {
    let mut headers = HeaderMap::new();
    for (rule, token) in rules.iter().zip(tokens) {
        let value = rule.header_value(token).ok_or_else(|| {
            FetchError::Refused(format!(
                "tenant {tenant}'s secret '{}' cannot be sent in a header",
                rule.secret()
            ))
        })?;
        headers.append(rule.header_name().clone(), value);
    }
    Ok(Outbound {
        headers,
        form: None,
    })
}

/// `: <error>` from an OAuth error answer (`{"error": "invalid_grant"}`), when it is a short
/// code; the rest of the answer is not repeated.
fn error_code(body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned));
    match code {
        Some(c) if c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()) => format!(": {c}"),
        _ => String::new(),
    }
}

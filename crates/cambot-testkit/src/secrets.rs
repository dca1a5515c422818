//! A tenant vault in a map, for tests of whatever reads credentials through
//! [`TenantSecrets`]: it counts lookups per name, records every store, and can be told to fail
//! reads like an unreadable vault.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use cambot_gateway::FoundSecret;
use cambot_gateway::Secret;
use cambot_gateway::SecretFuture;
use cambot_gateway::SecretsError;
use cambot_gateway::TenantSecrets;
use cambot_protocol::TenantId;

type Key = (String, String);

/// Secrets by (tenant, name).
#[derive(Default)]
pub struct MapSecrets {
    map: Mutex<BTreeMap<Key, (String, Option<i64>)>>,
    lookups: Mutex<BTreeMap<Key, usize>>,
    stores: Mutex<Vec<Key>>,
    fail_reads: AtomicBool,
}

impl std::fmt::Debug for MapSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only, like the real vault.
        let names: Vec<Key> = crate::locks::lock("map secrets", &self.map)
            .keys()
            .cloned()
            .collect();
        f.debug_struct("MapSecrets").field("names", &names).finish()
    }
}

impl MapSecrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tenant`'s secret `name` (no expiry).
    pub fn with(self, tenant: &str, name: &str, value: &str) -> Self {
        self.set(tenant, name, value, None);
        self
    }

    /// Sets `tenant`'s secret `name`, expiring at `expires_ms` (ms since the epoch).
    pub fn set(&self, tenant: &str, name: &str, value: &str, expires_ms: Option<i64>) {
        crate::locks::lock("map secrets", &self.map).insert(
            (tenant.to_owned(), name.to_owned()),
            (value.to_owned(), expires_ms),
        );
    }

    /// `tenant`'s secret `name` and its expiry.
    pub fn get(&self, tenant: &str, name: &str) -> Option<(String, Option<i64>)> {
        crate::locks::lock("map secrets", &self.map)
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }

    /// How many times `tenant`'s secret `name` was asked for.
    pub fn lookups(&self, tenant: &str, name: &str) -> usize {
        crate::locks::lock("map secret lookups", &self.lookups)
            .get(&(tenant.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every (tenant, name) stored through [`TenantSecrets::store`], in order.
    pub fn stores(&self) -> Vec<(String, String)> {
        crate::locks::lock("map secret stores", &self.stores).clone()
    }

    /// From now on every read fails (`true`) or works again (`false`).
    pub fn fail_reads(&self, fail: bool) {
        self.fail_reads.store(fail, Ordering::SeqCst);
    }

    fn check_readable(&self) -> Result<(), SecretsError> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(SecretsError("test vault told to fail".into()));
        }
        Ok(())
    }
}

impl TenantSecrets for MapSecrets {
    fn secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> SecretFuture<'a, Option<FoundSecret>> {
        Box::pin(async move {
            let key = (tenant.to_string(), name.to_owned());
            *crate::locks::lock("map secret lookups", &self.lookups)
                .entry(key.clone())
                .or_default() += 1;
            self.check_readable()?;
            Ok(crate::locks::lock("map secrets", &self.map)
                .get(&key)
                .map(|(value, expires_ms)| FoundSecret {
                    value: Secret::new(value.clone()),
                    expires_ms: *expires_ms,
                }))
        })
    }

    fn values<'a>(&'a self, tenant: &'a TenantId) -> SecretFuture<'a, Vec<Secret>> {
        Box::pin(async move {
            self.check_readable()?;
            let t = tenant.to_string();
            Ok(crate::locks::lock("map secrets", &self.map)
                .iter()
                .filter(|((owner, _), _)| *owner == t)
                .map(|(_, (value, _))| Secret::new(value.clone()))
                .collect())
        })
    }

    fn store<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        value: Secret,
        expires_ms: Option<i64>,
    ) -> SecretFuture<'a, ()> {
        Box::pin(async move {
            let key = (tenant.to_string(), name.to_owned());
            crate::locks::lock("map secret stores", &self.stores).push(key.clone());
            crate::locks::lock("map secrets", &self.map)
                .insert(key, (value.expose().to_owned(), expires_ms));
            Ok(())
        })
    }
}

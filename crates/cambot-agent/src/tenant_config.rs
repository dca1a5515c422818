//! `[tenants.<id>]`: per-tenant settings of the config file. Today: the tenant's fetch
//! credentials (`[[tenants.<id>.fetch_credentials]]`), headers built around one of the tenant's
//! vault secrets and added to its runs' fetches of exactly one origin.
//!
//! ```toml
//! [model]
//! fetch_allow_hosts = ["api.github.com"]
//!
//! [[tenants.acme.fetch_credentials]]
//! host = "api.github.com"
//! header = "authorization"
//! value = "Bearer secret:github"
//! ```

use std::collections::BTreeMap;

use cambot_gateway::FetchAllow;
use cambot_gateway::FetchCredential;
use cambot_gateway::FetchCredentialSpec;
use cambot_protocol::TenantId;
use serde::Deserialize;

/// One `[tenants.<id>]` table as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSection {
    /// Headers carrying one of the tenant's secrets to one origin of the fetch allowlist.
    pub fetch_credentials: Vec<FetchCredentialSpec>,
}

/// Each tenant's checked fetch credentials, for the gateway.
pub type TenantFetchCredentials = BTreeMap<TenantId, Vec<FetchCredential>>;

/// Checks every `[tenants.<id>]` table: the id is a tenant id, each rule parses (its value holds
/// exactly one `secret:NAME`), and its origin is also in `allow` (`[model] fetch_allow_hosts`:
/// a credential never widens what a run may reach). Errors are `(key, message)`; none quotes a
/// header value.
pub fn check_tenants(
    tenants: &BTreeMap<String, TenantSection>,
    allow: &[FetchAllow],
) -> Result<TenantFetchCredentials, (String, String)> {
    let mut out = TenantFetchCredentials::new();
    for (id, section) in tenants {
        let key = format!("tenants.{id}");
        let tenant = TenantId::new(id).map_err(|e| (key.clone(), e.to_string()))?;
        let mut rules = Vec::with_capacity(section.fetch_credentials.len());
        for (i, spec) in section.fetch_credentials.iter().enumerate() {
            let key = format!("{key}.fetch_credentials[{i}]");
            let rule = FetchCredential::parse(spec).map_err(|e| (key.clone(), e.to_string()))?;
            if !allow.contains(rule.origin()) {
                return Err((
                    key,
                    format!(
                        "{} is not in [model] fetch_allow_hosts: add it there too (a fetch \
                         credential does not allow a host by itself)",
                        rule.origin()
                    ),
                ));
            }
            if rules.iter().any(|r: &FetchCredential| {
                r.origin() == rule.origin() && r.header() == rule.header()
            }) {
                return Err((
                    key,
                    format!(
                        "a second credential for header {} on {}",
                        rule.header(),
                        rule.origin()
                    ),
                ));
            }
            rules.push(rule);
        }
        if !rules.is_empty() {
            out.insert(tenant, rules);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BTreeMap<String, TenantSection> {
        #[derive(Deserialize)]
        struct File {
            tenants: BTreeMap<String, TenantSection>,
        }
        toml::from_str::<File>(text).unwrap().tenants
    }

    fn allow(hosts: &[&str]) -> Vec<FetchAllow> {
        hosts
            .iter()
            .map(|h| FetchAllow::parse(h).unwrap())
            .collect()
    }

    const ACME: &str = r#"
        [[tenants.acme.fetch_credentials]]
        host = "api.github.com"
        header = "authorization"
        value = "Bearer secret:github"
    "#;

    #[test]
    fn a_rule_for_an_allowed_host_is_kept_for_its_tenant() {
        let rules = check_tenants(&parse(ACME), &allow(&["api.github.com"])).unwrap();
        let acme = TenantId::new("acme").unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[&acme][0].secret(), "github");
        assert_eq!(rules[&acme][0].header(), "authorization");
    }

    #[test]
    fn a_rule_whose_host_is_not_allowed_is_refused() {
        let (key, message) = check_tenants(&parse(ACME), &allow(&["example.com"])).unwrap_err();
        assert_eq!(key, "tenants.acme.fetch_credentials[0]");
        assert!(message.contains("fetch_allow_hosts"), "{message}");
    }

    #[test]
    fn a_literal_value_is_refused_without_quoting_it() {
        let text = r#"
            [[tenants.acme.fetch_credentials]]
            host = "api.github.com"
            header = "authorization"
            value = "Bearer ghp_literal_token_value_123"
        "#;
        let (key, message) = check_tenants(&parse(text), &allow(&["api.github.com"])).unwrap_err();
        assert_eq!(key, "tenants.acme.fetch_credentials[0]");
        assert!(!message.contains("ghp_literal"), "{message}");
    }

    #[test]
    fn a_bad_tenant_id_and_an_unknown_key_are_refused() {
        let text = "[tenants.ACME]\n";
        let (key, _) = check_tenants(&parse(text), &[]).unwrap_err();
        assert_eq!(key, "tenants.ACME");
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            tenants: BTreeMap<String, TenantSection>,
        }
        assert!(toml::from_str::<File>("[tenants.acme]\nprovider = \"x\"\n").is_err());
    }
}

//! Web channel tests through the real daemon, router and store, with a scripted runner.

mod browser;
mod expiry;
mod hardening;
mod isolation;
mod issuers;
mod jwt;
mod sign_in;
mod signing_vault;
mod stream;
pub(crate) mod support;
mod tenant_delivery;
mod tenant_state;

//! Web channel tests through the real daemon, router and store, with a scripted runner.

mod browser;
mod hardening;
mod isolation;
mod jwt;
mod stream;
pub(crate) mod support;

//! # cambot-providers

//! # cambot-core

//! # cambot-sandbox

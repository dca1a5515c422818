//! # cambot-agent

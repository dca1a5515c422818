//! # cambot-channels

//! cambot-agent's integration tests: one binary, cases under `suite/`.
mod suite;

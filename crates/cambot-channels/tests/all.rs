//! cambot-channels integration tests: one binary, cases under `suite/`.
mod suite;

//! cambot-core integration tests: one binary, cases under `suite/`.
mod suite;

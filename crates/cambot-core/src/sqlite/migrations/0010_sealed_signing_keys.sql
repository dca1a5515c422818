-- Web signing keys sealed by the credential vault: when `sealed` is 1, `private_key` holds the
-- vault's `nonce ‖ ciphertext` (bound to the tenant and the key id), never the key itself.
-- Rows written before are 0 (plaintext) until the daemon seals them at its next start.
ALTER TABLE web_signing_keys ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;

-- Idempotency-Keys are kept only as the hex SHA-256 of the key (product.md: "Idempotency-Keys are
-- kept only hashed"): a client may put anything in the header, and what it chose is nobody's
-- business but its own. Lookups only ever compare, so the hash serves as well as the key.
-- Existing rows are hashed in place (keys are ASCII, so UTF-8 bytes = what the service hashes).
ALTER TABLE idempotency_keys RENAME COLUMN key TO key_hash;
UPDATE idempotency_keys SET key_hash = encode(sha256(convert_to(key_hash, 'UTF8')), 'hex');
ALTER TABLE idempotency_keys
    ADD CONSTRAINT idempotency_keys_key_hash_hex CHECK (key_hash ~ '^[0-9a-f]{64}$');

-- API keys. A key is `mk_` and 32 random bytes (base64url); only its SHA-256 is stored, so a leak of this
-- table gives no usable key. `prefix` (the key's first characters) tells keys apart in listings. A revoked
-- key keeps its row, so what it did stays attributable.

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    hash          bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    prefix        text NOT NULL,
    default_user  text NOT NULL DEFAULT 'default',
    -- Requests per minute; NULL: the server's default (auth.rate_limit); 0: unlimited.
    rate_limit    integer CHECK (rate_limit >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

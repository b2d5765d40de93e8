-- The first schema: tenants, their end users, sessions, the chat logs the proxy records, and memory facts.
-- Every table carries tenant_id, and every key that points across tables includes it, so a row can never
-- reference another tenant's row.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Until API keys exist, everything runs under this tenant.
INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'default');

CREATE TABLE users (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    external_id   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE sessions (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL,
    external_id   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, user_id, external_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- One row per exchange: the request's new messages and the assistant's reply. The id is given by whoever
-- captured the exchange, so storing it again (a spool replay) is a no-op.
CREATE TABLE chat_logs (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    user_id       uuid NOT NULL,
    session_id    uuid,
    source        text NOT NULL CHECK (source IN ('proxy', 'api', 'sdk')),
    endpoint      text NOT NULL,
    model         text,
    messages      jsonb NOT NULL,
    reply         jsonb,
    usage         jsonb,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'received', 'failed')),
    error         text,
    occurred_at   timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    received_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX chat_logs_user_time ON chat_logs (tenant_id, user_id, occurred_at);
CREATE INDEX chat_logs_pending ON chat_logs (created_at) WHERE status = 'pending';

CREATE TABLE memory_facts (
    tenant_id        uuid NOT NULL,
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL,
    text             text NOT NULL,
    category         text,
    slot             text,
    value            text,
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'superseded', 'archived', 'deleted')),
    embedding        vector,
    embedding_model  text,
    source_chat_log_ids uuid[] NOT NULL DEFAULT '{}',
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX memory_facts_user_status ON memory_facts (tenant_id, user_id, status);

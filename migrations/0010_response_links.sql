-- Which tenant (and end user, and session) created each OpenAI response id that went through the proxy.
-- With the server's provider key every tenant shares one provider account, so a response id is honoured
-- only for the tenant that created it (previous_response_id, GET/DELETE /v1/responses/{id} …), and a call
-- that continues a response joins its session.
CREATE TABLE response_links (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    response_id  text NOT NULL,
    end_user     text NOT NULL,
    session      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, response_id)
);

-- The provider keeps a stored response for 30 days; the worker purges links past that by created_at.
CREATE INDEX response_links_created ON response_links (created_at);

-- Evidence archives hosts upload (`cordon evidence`, or a responder's command): one row per
-- archive id, the archive itself with it, so that both stores keep it the same way.
CREATE TABLE evidence (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    sandbox TEXT NOT NULL,
    session TEXT,
    received_ns BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    archive BLOB NOT NULL
);
CREATE INDEX evidence_session ON evidence (session, received_ns);
CREATE INDEX evidence_host_sandbox ON evidence (host, sandbox, received_ns);

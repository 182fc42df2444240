-- The collector's store. The PostgreSQL migration of the same number creates the same tables,
-- columns and indexes; only the spelling of the row counter differs.

-- Every event once, by its id. `seq` is the order of arrival (cursor for the stream);
-- `time_ns` is the event's own time. `subject` is what free-text search looks in (path,
-- domain, address, syscall, program), `body` the event's JSON as the host sent it.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    sandbox TEXT NOT NULL,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ns BIGINT NOT NULL,
    received_ns BIGINT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_sandbox_time ON events (sandbox, time_ns);
CREATE INDEX events_host_time ON events (host, time_ns);
CREATE INDEX events_time ON events (time_ns);

-- Each host as it last reported itself: when, and its sandboxes (JSON).
CREATE TABLE hosts (
    name TEXT PRIMARY KEY,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns BIGINT NOT NULL,
    polled_ns BIGINT,
    sandboxes TEXT NOT NULL
);

-- API tokens: hosts (ingest, commands), viewers, responders, admins. Only a hash is kept.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    host TEXT,
    hash TEXT NOT NULL UNIQUE,
    created_ns BIGINT NOT NULL,
    revoked_ns BIGINT
);

-- Responders' commands: queued -> delivered -> done | failed; queued or delivered -> expired.
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    sandbox TEXT NOT NULL,
    action TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_ns BIGINT NOT NULL,
    expires_ns BIGINT NOT NULL,
    status TEXT NOT NULL,
    delivered_ns BIGINT,
    done_ns BIGINT,
    error TEXT,
    took_ms BIGINT
);
CREATE INDEX commands_host_status ON commands (host, status);
CREATE INDEX commands_issued ON commands (issued_ns);

-- Event ids are unique per host, not across hosts: one host cannot keep another's event out
-- by sending its id first. SQLite cannot change a constraint in place: the table is rebuilt,
-- its rows (and their seq) kept.
CREATE TABLE events_new (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    host TEXT NOT NULL,
    sandbox TEXT NOT NULL,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ns BIGINT NOT NULL,
    received_ns BIGINT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (host, id)
);
INSERT INTO events_new (seq, id, host, sandbox, profile, kind, time_ns, received_ns, subject, body)
    SELECT seq, id, host, sandbox, profile, kind, time_ns, received_ns, subject, body FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_sandbox_time ON events (sandbox, time_ns);
CREATE INDEX events_host_time ON events (host, time_ns);
CREATE INDEX events_time ON events (time_ns);

-- Events the collector set aside (the rest of their batch was stored): why, and the start of
-- what was sent, for people to look at.
CREATE TABLE rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    received_ns BIGINT NOT NULL,
    event_id TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    excerpt TEXT NOT NULL
);
CREATE INDEX rejected_host ON rejected (host, seq);

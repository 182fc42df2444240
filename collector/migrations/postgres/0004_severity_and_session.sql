-- Each event's severity (0 info, 1 low, 2 medium, 3 high, 4 critical) and session, for
-- filtering and sorting. Events stored before the agents said either are rated by kind
-- (violations medium, lost events high) and belong to no session.
ALTER TABLE events ADD COLUMN severity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN session TEXT;
UPDATE events SET severity = 2
    WHERE kind IN ('network_denied', 'dns_denied', 'syscall_denied', 'file_denied', 'other_denied');
UPDATE events SET severity = 3 WHERE kind = 'events_lost';
CREATE INDEX events_session_time ON events (session, time_ns);

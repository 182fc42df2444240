-- An event set aside is kept once per host, id and reason: a batch sent again after a lost
-- answer does not add its set-aside events twice. (Events without a readable id are kept
-- each time; each batch keeps at most a few of those.)
DELETE FROM rejected WHERE event_id IS NOT NULL AND seq NOT IN
    (SELECT MIN(seq) FROM rejected WHERE event_id IS NOT NULL GROUP BY host, event_id, reason);
CREATE UNIQUE INDEX rejected_once ON rejected (host, event_id, reason) WHERE event_id IS NOT NULL;

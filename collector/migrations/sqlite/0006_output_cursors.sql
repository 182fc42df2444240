-- Where each output of collector.toml ([[output]], by name) has got to: every event of a
-- seq at or below `seq` was delivered (or did not match its filter). Advanced only once the
-- receiver acknowledged, so an output that was down goes on from here.
CREATE TABLE output_cursors (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_ns BIGINT NOT NULL
);

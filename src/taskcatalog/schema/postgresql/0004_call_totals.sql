-- Telemetry totals (namespace taskcatalog), as schema/sqlite/0004_call_totals.sql:
-- one row per (interface, version, customer) for all time; histogram is a
-- JSON object {bucket: calls} kept as TEXT.

CREATE TABLE taskcatalog_call_totals (
    interface TEXT NOT NULL,
    version BIGINT NOT NULL,
    customer TEXT NOT NULL,
    calls BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    first_call DOUBLE PRECISION NOT NULL,   -- POSIX seconds, UTC
    last_call DOUBLE PRECISION NOT NULL,
    max_duration DOUBLE PRECISION NOT NULL, -- seconds
    histogram TEXT NOT NULL,
    PRIMARY KEY (interface, version, customer)
);

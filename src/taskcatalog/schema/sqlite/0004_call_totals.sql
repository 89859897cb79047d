-- Telemetry totals (namespace taskcatalog): one row per (interface, version,
-- customer) for all time, kept up to date in the same transaction as the
-- hourly aggregates of 0001, so that stats() and usage() without ``since``
-- read one row per group instead of summing every hour: their cost follows
-- the number of groups, not how long the catalog has been recording.
--
-- histogram is a JSON object {bucket: calls} with the latency buckets of
-- taskcatalog_call_stats; version 0 and customer '' stand for none, as there.

CREATE TABLE taskcatalog_call_totals (
    interface TEXT NOT NULL,
    version INTEGER NOT NULL,
    customer TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    first_call REAL NOT NULL,       -- POSIX seconds, UTC
    last_call REAL NOT NULL,
    max_duration REAL NOT NULL,     -- seconds
    histogram TEXT NOT NULL,
    PRIMARY KEY (interface, version, customer)
) WITHOUT ROWID;

INSERT INTO taskcatalog_call_totals
SELECT interface, version, customer, sum(calls), sum(errors), min(first_call), max(last_call), max(max_duration),
       json_group_object(bucket, calls)
FROM (
    SELECT interface, version, customer, bucket, sum(calls) AS calls, sum(errors) AS errors,
           min(first_call) AS first_call, max(last_call) AS last_call, max(max_duration) AS max_duration
    FROM taskcatalog_call_stats
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
)
GROUP BY 1, 2, 3;

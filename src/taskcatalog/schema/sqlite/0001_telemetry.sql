-- Telemetry (namespace taskcatalog): what the catalog records of every call.
--
-- Each writing process has a row in taskcatalog_processes and names what its
-- records repeat by small keys of its own: (interface, version, customer) in
-- taskcatalog_call_keys, (slot, plugin) in taskcatalog_plugin_keys; version 0
-- and customer '' stand for none there.
--
-- Raw records come in batches, one row per write, as a JSON array (one
-- statement per batch is what lets a busy process keep up; see telemetry.py).
-- taskcatalog_call_log shows them as one row per call. The aggregates that
-- stats() and usage() read are kept up to date as batches are written, and
-- survive the pruning of old batches.

CREATE TABLE taskcatalog_processes (
    id INTEGER PRIMARY KEY,
    prefix TEXT NOT NULL UNIQUE,    -- its call ids are prefix || '-' || number
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    first_seen REAL NOT NULL        -- POSIX seconds, UTC
);

CREATE TABLE taskcatalog_call_keys (
    process INTEGER NOT NULL,       -- taskcatalog_processes.id
    key INTEGER NOT NULL,
    interface TEXT NOT NULL,
    version INTEGER NOT NULL,
    customer TEXT NOT NULL,
    PRIMARY KEY (process, key)
) WITHOUT ROWID;

CREATE TABLE taskcatalog_plugin_keys (
    process INTEGER NOT NULL,
    key INTEGER NOT NULL,
    slot,                           -- a slot id: text or integer
    plugin TEXT NOT NULL,
    PRIMARY KEY (process, key)
) WITHOUT ROWID;

CREATE TABLE taskcatalog_call_batches (
    id INTEGER PRIMARY KEY,         -- the order batches were written in
    process INTEGER NOT NULL,       -- taskcatalog_processes.id
    clock REAL NOT NULL,            -- POSIX seconds = clock + a record's nanoseconds * 1e-9
    calls INTEGER NOT NULL,
    earliest REAL NOT NULL,         -- POSIX seconds: the first and last start in the batch
    latest REAL NOT NULL,
    -- [[number, call key, start ns, duration ns, status, parent call id,
    --   error type, error, [[plugin key, start ns, duration ns], ...]], ...]
    records TEXT NOT NULL
);
CREATE INDEX taskcatalog_call_batches_latest ON taskcatalog_call_batches (latest);

CREATE VIEW taskcatalog_call_log AS
SELECT b.id AS batch,
       j.key AS position,
       b.process AS process,
       p.prefix || '-' || json_extract(j.value, '$[0]') AS call_id,
       json_extract(j.value, '$[5]') AS parent_id,
       k.interface AS interface,
       nullif(k.version, 0) AS version,
       nullif(k.customer, '') AS customer,
       json_extract(j.value, '$[2]') * 1e-9 + b.clock AS started,
       json_extract(j.value, '$[3]') * 1e-9 AS duration,
       json_extract(j.value, '$[4]') AS status,
       json_extract(j.value, '$[6]') AS error_type,
       json_extract(j.value, '$[7]') AS error,
       json_extract(j.value, '$[8]') AS plugins
FROM taskcatalog_call_batches AS b
JOIN taskcatalog_processes AS p ON p.id = b.process
JOIN json_each(b.records) AS j
JOIN taskcatalog_call_keys AS k ON k.process = b.process AND k.key = json_extract(j.value, '$[1]');

-- Aggregates per hour and latency bucket (a bucket ends at
-- 1e-7 * 2^(bucket/16) seconds, as records.py computes it): counts, first and
-- last call, the longest call. Summed over buckets they give the totals;
-- counted per bucket, the latency histogram.
CREATE TABLE taskcatalog_call_stats (
    interface TEXT NOT NULL,
    version INTEGER NOT NULL,
    customer TEXT NOT NULL,
    hour INTEGER NOT NULL,          -- POSIX seconds // 3600
    bucket INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    first_call REAL NOT NULL,
    last_call REAL NOT NULL,
    max_duration REAL NOT NULL,
    PRIMARY KEY (interface, version, customer, hour, bucket)
) WITHOUT ROWID;

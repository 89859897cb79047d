-- Batch outcomes keyed by one integer (namespace taskcatalog): a row's cost
-- is the INSERT of its outcome, and SQLite inserts into a table keyed by its
-- rowid (appended at the end, as outcomes mostly are) about 1.3 us faster
-- than into a WITHOUT ROWID table keyed by (batch, number), a tenth of a
-- cheap row's time. So an outcome's key is batch * 2^32 + number, its rowid,
-- and an outcome is found by that key (a batch holds fewer than 2^32 rows);
-- batch and number stay columns of their own. The table is made anew and its
-- freeze triggers with it.

CREATE TABLE taskcatalog_batch_outcomes_keyed (
    key INTEGER PRIMARY KEY,        -- batch * 4294967296 + number
    batch INTEGER NOT NULL,
    number INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
    value TEXT,                     -- JSON of the value, or its repr when JSON cannot hold it
    value_is_repr INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    error TEXT,
    call_id TEXT,
    duration REAL,
    finished_at REAL NOT NULL,
    CHECK (number BETWEEN 1 AND 4294967295 AND key = batch * 4294967296 + number)
);

INSERT INTO taskcatalog_batch_outcomes_keyed
SELECT batch * 4294967296 + number, batch, number, status, value, value_is_repr, error_type, error, call_id,
       duration, finished_at
FROM taskcatalog_batch_outcomes ORDER BY batch, number;

DROP TABLE taskcatalog_batch_outcomes;
ALTER TABLE taskcatalog_batch_outcomes_keyed RENAME TO taskcatalog_batch_outcomes;

CREATE TRIGGER taskcatalog_batch_outcomes_frozen_insert BEFORE INSERT ON taskcatalog_batch_outcomes
WHEN (SELECT status FROM taskcatalog_batches WHERE id = NEW.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_outcomes_frozen_update BEFORE UPDATE ON taskcatalog_batch_outcomes
WHEN EXISTS (SELECT 1 FROM taskcatalog_batches WHERE id IN (OLD.batch, NEW.batch) AND status = 'executed')
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_outcomes_frozen_delete BEFORE DELETE ON taskcatalog_batch_outcomes
WHEN (SELECT status FROM taskcatalog_batches WHERE id = OLD.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

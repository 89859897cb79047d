-- Batch execution, reshaped so that a row costs one small write: an executor
-- claims a range of rows at a time (taskcatalog_batch_claims), and each row's
-- outcome is one INSERT into taskcatalog_batch_outcomes, appended in number
-- order, instead of two UPDATEs of the row and its status index. A row is
-- pending while it has no outcome. This also closes ways around the freeze
-- that 0002 left open (moving a row or a dependency into an executed batch,
-- changing a dependency, INSERT OR REPLACE of an executed batch's header).

CREATE TABLE taskcatalog_batch_outcomes (
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
    PRIMARY KEY (batch, number)
) WITHOUT ROWID;
-- Kept small on purpose, since a row's cost is this INSERT: who ran a row is
-- the process its call_id names (the prefix before '-'; claims name it with
-- host and pid), and no foreign key to the row is checked per insert (rows of
-- an executing batch cannot be removed, those of an executed one are frozen).

INSERT INTO taskcatalog_batch_outcomes
SELECT batch, number, status, value, value_is_repr, error_type, error, call_id, duration,
       coalesce(finished_at, 0)
FROM taskcatalog_batch_rows WHERE status IN ('ok', 'error', 'skipped');

CREATE TABLE taskcatalog_batch_claims (
    batch INTEGER NOT NULL REFERENCES taskcatalog_batches (id),
    first INTEGER NOT NULL,         -- the claim covers row numbers first..last
    last INTEGER NOT NULL,
    claimed_by TEXT,                -- 'host pid prefix' (prefix: of the call ids); NULL once handed back
    claimed_at REAL NOT NULL,
    PRIMARY KEY (batch, first)
) WITHOUT ROWID;

DROP INDEX taskcatalog_batch_rows_status;
DROP TRIGGER taskcatalog_batch_rows_frozen_update;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN status;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN claimed_by;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN claimed_at;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN value;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN value_is_repr;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN error_type;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN error;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN call_id;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN duration;
ALTER TABLE taskcatalog_batch_rows DROP COLUMN finished_at;

-- The freeze, for every table and every way in: an executed batch is neither
-- the old nor the new owner of anything changed.

CREATE TRIGGER taskcatalog_batches_frozen_replace BEFORE INSERT ON taskcatalog_batches
WHEN EXISTS (SELECT 1 FROM taskcatalog_batches WHERE id = NEW.id AND status = 'executed')
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_rows_frozen_update BEFORE UPDATE ON taskcatalog_batch_rows
WHEN EXISTS (SELECT 1 FROM taskcatalog_batches WHERE id IN (OLD.batch, NEW.batch) AND status = 'executed')
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_dependencies_frozen_update BEFORE UPDATE ON taskcatalog_batch_dependencies
WHEN EXISTS (SELECT 1 FROM taskcatalog_batches WHERE id IN (OLD.batch, NEW.batch) AND status = 'executed')
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_outcomes_frozen_insert BEFORE INSERT ON taskcatalog_batch_outcomes
WHEN (SELECT status FROM taskcatalog_batches WHERE id = NEW.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_outcomes_frozen_update BEFORE UPDATE ON taskcatalog_batch_outcomes
WHEN EXISTS (SELECT 1 FROM taskcatalog_batches WHERE id IN (OLD.batch, NEW.batch) AND status = 'executed')
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_outcomes_frozen_delete BEFORE DELETE ON taskcatalog_batch_outcomes
WHEN (SELECT status FROM taskcatalog_batches WHERE id = OLD.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_claims_frozen_insert BEFORE INSERT ON taskcatalog_batch_claims
WHEN (SELECT status FROM taskcatalog_batches WHERE id = NEW.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_claims_frozen_update BEFORE UPDATE ON taskcatalog_batch_claims
WHEN EXISTS (SELECT 1 FROM taskcatalog_batches WHERE id IN (OLD.batch, NEW.batch) AND status = 'executed')
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_claims_frozen_delete BEFORE DELETE ON taskcatalog_batch_claims
WHEN (SELECT status FROM taskcatalog_batches WHERE id = OLD.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

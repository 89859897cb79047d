-- Batches (namespace taskcatalog): calls prepared as rows, reviewed, executed
-- once, then kept as a frozen audit trail. Triggers refuse every change to an
-- executed batch, whatever code tries it.

CREATE TABLE taskcatalog_batches (
    id INTEGER PRIMARY KEY,
    interface TEXT NOT NULL,
    version INTEGER NOT NULL,
    customer TEXT,                  -- NULL: calls without a customer
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'executing', 'executed')),
    created_at REAL NOT NULL,       -- POSIX seconds, UTC
    created_by TEXT NOT NULL,
    started_at REAL,                -- the first execute()
    executed_at REAL,               -- when the last row got its outcome
    executed_by TEXT,
    next_number INTEGER NOT NULL DEFAULT 1   -- rows are numbered from 1 in the order they were added
);

CREATE TABLE taskcatalog_batch_rows (
    batch INTEGER NOT NULL REFERENCES taskcatalog_batches (id),
    number INTEGER NOT NULL,
    args TEXT NOT NULL,             -- JSON object: the keyword arguments of the call
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'ok', 'error', 'skipped')),
    claimed_by TEXT,                -- 'host pid prefix' of the executor running it
    claimed_at REAL,
    value TEXT,                     -- JSON of the value, or its repr when JSON cannot hold it
    value_is_repr INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    error TEXT,
    call_id TEXT,
    duration REAL,
    finished_at REAL,
    PRIMARY KEY (batch, number)
) WITHOUT ROWID;
CREATE INDEX taskcatalog_batch_rows_status ON taskcatalog_batch_rows (batch, status, number);

CREATE TABLE taskcatalog_batch_dependencies (
    batch INTEGER NOT NULL REFERENCES taskcatalog_batches (id),
    depends_on INTEGER NOT NULL REFERENCES taskcatalog_batches (id),
    PRIMARY KEY (batch, depends_on)
) WITHOUT ROWID;

CREATE TRIGGER taskcatalog_batches_frozen_update BEFORE UPDATE ON taskcatalog_batches
WHEN OLD.status = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batches_frozen_delete BEFORE DELETE ON taskcatalog_batches
WHEN OLD.status = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_rows_frozen_insert BEFORE INSERT ON taskcatalog_batch_rows
WHEN (SELECT status FROM taskcatalog_batches WHERE id = NEW.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_rows_frozen_update BEFORE UPDATE ON taskcatalog_batch_rows
WHEN (SELECT status FROM taskcatalog_batches WHERE id = OLD.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_rows_frozen_delete BEFORE DELETE ON taskcatalog_batch_rows
WHEN (SELECT status FROM taskcatalog_batches WHERE id = OLD.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_dependencies_frozen_insert BEFORE INSERT ON taskcatalog_batch_dependencies
WHEN (SELECT status FROM taskcatalog_batches WHERE id = NEW.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

CREATE TRIGGER taskcatalog_batch_dependencies_frozen_delete BEFORE DELETE ON taskcatalog_batch_dependencies
WHEN (SELECT status FROM taskcatalog_batches WHERE id = OLD.batch) = 'executed'
BEGIN SELECT RAISE(ABORT, 'taskcatalog: this batch is executed and frozen'); END;

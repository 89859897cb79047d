-- Batch execution (namespace taskcatalog), as schema/sqlite/0003_batch_claims.sql:
-- a row is pending while it has no outcome. Executors on PostgreSQL claim a
-- row by locking it (SELECT ... FOR UPDATE SKIP LOCKED) in the transaction
-- that stores its outcome; taskcatalog_batch_claims is where SQLite's
-- executors record the ranges they claim (kept here too, so that a database
-- copied from SQLite keeps them).
CREATE TABLE taskcatalog_batch_outcomes (
    batch BIGINT NOT NULL,
    number BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
    value TEXT,                     -- JSON of the value, or its repr when JSON cannot hold it
    value_is_repr BIGINT NOT NULL DEFAULT 0,
    error_type TEXT,
    error TEXT,
    call_id TEXT,
    duration DOUBLE PRECISION,
    finished_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (batch, number)
);

CREATE TABLE taskcatalog_batch_claims (
    batch BIGINT NOT NULL REFERENCES taskcatalog_batches (id),
    first BIGINT NOT NULL,          -- the claim covers row numbers first..last
    last BIGINT NOT NULL,
    claimed_by TEXT,                -- 'host pid prefix'; NULL once handed back
    claimed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (batch, first)
);

CREATE TRIGGER taskcatalog_batch_outcomes_frozen BEFORE INSERT OR UPDATE OR DELETE ON taskcatalog_batch_outcomes
FOR EACH ROW EXECUTE FUNCTION taskcatalog_refuse_frozen();
CREATE TRIGGER taskcatalog_batch_claims_frozen BEFORE INSERT OR UPDATE OR DELETE ON taskcatalog_batch_claims
FOR EACH ROW EXECUTE FUNCTION taskcatalog_refuse_frozen();

-- TRUNCATE (what wipe() runs here) fires no row trigger: refused as a whole
-- while any batch is executed, as SQLite's DELETE triggers refuse wipe() there.
CREATE FUNCTION taskcatalog_refuse_truncating_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM taskcatalog_batches WHERE status = 'executed') THEN
        RAISE EXCEPTION 'taskcatalog: this batch is executed and frozen';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER taskcatalog_batches_frozen_truncate BEFORE TRUNCATE ON taskcatalog_batches
FOR EACH STATEMENT EXECUTE FUNCTION taskcatalog_refuse_truncating_frozen();
CREATE TRIGGER taskcatalog_batch_rows_frozen_truncate BEFORE TRUNCATE ON taskcatalog_batch_rows
FOR EACH STATEMENT EXECUTE FUNCTION taskcatalog_refuse_truncating_frozen();
CREATE TRIGGER taskcatalog_batch_dependencies_frozen_truncate BEFORE TRUNCATE ON taskcatalog_batch_dependencies
FOR EACH STATEMENT EXECUTE FUNCTION taskcatalog_refuse_truncating_frozen();
CREATE TRIGGER taskcatalog_batch_outcomes_frozen_truncate BEFORE TRUNCATE ON taskcatalog_batch_outcomes
FOR EACH STATEMENT EXECUTE FUNCTION taskcatalog_refuse_truncating_frozen();
CREATE TRIGGER taskcatalog_batch_claims_frozen_truncate BEFORE TRUNCATE ON taskcatalog_batch_claims
FOR EACH STATEMENT EXECUTE FUNCTION taskcatalog_refuse_truncating_frozen();

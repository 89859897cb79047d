-- Batch outcomes keyed by one integer (namespace taskcatalog), as
-- schema/sqlite/0005_outcome_keys.sql, where it makes a row's INSERT cheaper:
-- key = batch * 2^32 + number, the primary key, so that both engines hold
-- the same columns and find an outcome the same way.

ALTER TABLE taskcatalog_batch_outcomes ADD COLUMN key BIGINT;
-- The outcomes of executed batches are frozen: their freeze is lifted for this update only.
ALTER TABLE taskcatalog_batch_outcomes DISABLE TRIGGER taskcatalog_batch_outcomes_frozen;
UPDATE taskcatalog_batch_outcomes SET key = batch * 4294967296 + number;
ALTER TABLE taskcatalog_batch_outcomes ENABLE TRIGGER taskcatalog_batch_outcomes_frozen;
ALTER TABLE taskcatalog_batch_outcomes ALTER COLUMN key SET NOT NULL;
ALTER TABLE taskcatalog_batch_outcomes DROP CONSTRAINT taskcatalog_batch_outcomes_pkey;
ALTER TABLE taskcatalog_batch_outcomes ADD PRIMARY KEY (key);
ALTER TABLE taskcatalog_batch_outcomes ADD CHECK (number BETWEEN 1 AND 4294967295 AND key = batch * 4294967296 + number);

-- Telemetry records packed (namespace taskcatalog), as
-- schema/sqlite/0006_packed_records.sql: records becomes BYTEA, holding a
-- pickle (protocol 5) of the batch's record tuples, or, for batches written
-- before, their JSON text as UTF-8 (first byte '['). The view that read the
-- JSON goes.

DROP VIEW taskcatalog_call_log;
ALTER TABLE taskcatalog_call_batches ALTER COLUMN records TYPE BYTEA USING convert_to(records, 'UTF8');

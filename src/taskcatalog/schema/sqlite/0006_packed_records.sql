-- Telemetry records packed (namespace taskcatalog): a batch's records are
-- now written as a pickle (protocol 5) of its list of flat record tuples, a
-- BLOB in taskcatalog_call_batches.records, where batches written before
-- hold their JSON text; readers tell them apart by type (and by the first
-- byte: '[' is JSON). Encoding the records as JSON text cost the writer
-- thread about 600 ns a call, held under the GIL the calling threads need;
-- a pickle costs about 150 ns. SQL cannot take a pickle apart, so the view
-- taskcatalog_call_log, which read the JSON, goes: read raw records through
-- catalog.history() (taskcatalog history --json).

DROP VIEW taskcatalog_call_log;

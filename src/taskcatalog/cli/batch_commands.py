"""``taskcatalog batch ...``: see docs/batches.md (filled in with batches)."""

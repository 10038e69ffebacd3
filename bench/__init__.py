"""`make bench`: Guard's per-call overhead against a bare call, the SQLite floor, DBOS and Edictum."""

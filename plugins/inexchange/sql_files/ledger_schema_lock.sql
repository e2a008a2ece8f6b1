-- PostgreSQL only: serialise the ledger's DDL between tasks that start at once (ledger_schema.sql).
-- A transaction-scoped advisory lock on a fixed key, released at commit; the key is the text
-- 'inexchange_dispatch' hashed, so it does not collide with other applications' keys by accident.
SELECT pg_advisory_xact_lock(hashtext('inexchange_dispatch'))

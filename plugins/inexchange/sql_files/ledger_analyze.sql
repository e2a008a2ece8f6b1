-- PostgreSQL only: refresh the planner's statistics of the ledger table (ledger_statistics_stale.sql
-- says when). ANALYZE reads a sample of the table (about 30,000 rows), whatever its size.
ANALYZE inexchange_dispatch

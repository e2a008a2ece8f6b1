-- PostgreSQL only: whether the ledger table's statistics miss more of its changes than autovacuum
-- lets pass before it analyses a table (the server's autovacuum_analyze_threshold and
-- autovacuum_analyze_scale_factor). A day's rows are inserted, submitted and given their document
-- ids within minutes, before autovacuum comes round; without statistics that know the ids, the
-- planner reads `inexchange_document_id = ANY(...)` of a few hundred ids by a scan of the whole
-- table rather than by the document index.
SELECT COALESCE(MAX(CASE WHEN s.n_mod_since_analyze >
                      CAST(current_setting('autovacuum_analyze_threshold') AS FLOAT8)
                      + CAST(current_setting('autovacuum_analyze_scale_factor') AS FLOAT8) * GREATEST(c.reltuples, 0)
                    THEN 1 ELSE 0 END), 0) AS stale
  FROM pg_stat_user_tables AS s
  JOIN pg_class AS c ON c.oid = s.relid
 WHERE s.relid = CAST('inexchange_dispatch' AS REGCLASS)

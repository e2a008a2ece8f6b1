-- Of the listed documents, those of ledger rows the run's delivery sensor follows:
-- the rows of ledger_select_watched.sql. Read by the document index, so the cost follows the documents
-- asked about, not the rows waiting: the state is tested through COALESCE so that no index on the
-- state can serve the query instead (SQLite's planner, without statistics, would walk every waiting
-- row by the state index for each list of documents).
SELECT inexchange_document_id
  FROM inexchange_dispatch
 WHERE inexchange_document_id IN :document_ids
   AND COALESCE(state, '') = 'waiting'
   AND ((:selected = 0 AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (:selected = 1 AND invoice_number IN :numbers)
        OR dag_run_id = :dag_run_id)

-- Every invoice of the dispatch ledger (inexchange_dispatch, all days) that needs a person now.
--
-- An invoice needs a person when its ledger state is
--   rejected   validation refused it; nothing was sent: fix the invoice or customer in the ERP;
--   stopped    InExchange stopped the delivery: act in InExchange's portal;
--   in_doubt   a send whose outcome InExchange never told: check InExchange's portal;
--   failed     and InExchange received it (inexchange_document_id is set: it reported Error while
--              delivering; such a row is never resent automatically), or its attempts reached
--              max_attempts (the submit task's attempts per invoice, inexchange.states.MAX_ATTEMPTS).
-- A failed row with attempts left and no InExchange document id needs nobody: the submit task
-- retries it at next_retry_at (NULL: at the next run). The same definition is
-- inexchange.pipeline.needs_person (the run turns red) and the page's "needs a person" filter.
--
-- Columns: invoice_id, invoice_number, invoice_type (debit/credit), invoice_date (YYYY-MM-DD),
-- customer_number, customer_name, state, reason (why it needs a person, in words),
-- inexchange_status (InExchange's last status), message (what went wrong, from validation or
-- InExchange), attempts (sends tried), inexchange_document_id (InExchange's id, when it has one),
-- updated_at (last change of the ledger row, UTC ISO text), dag_run_id (the run that changed it last).
-- Oldest invoice first.
--
-- One bound parameter, max_attempts (an integer, 5 by default). From Python:
-- inexchange.attention.needs_attention(engine). By hand, on the reporting database (connection
-- inexchange_reporting), from the repository's root:
--   psql "host=... dbname=... user=..." -v max_attempts=5 -f include/sql/needs_attention.sql
--   sqlite3: set the parameter max_attempts (named with its colon) to 5 with the shell's
--   .parameter set command, then .read include/sql/needs_attention.sql; the exact command line is
--   in the docstring of inexchange/attention.py. (This comment writes no parameter with its colon:
--   SQLAlchemy would take it for a bind parameter.)
SELECT invoice_id, invoice_number, invoice_type, invoice_date, customer_number, customer_name, state,
       CASE
           WHEN state = 'rejected' THEN 'rejected by validation: fix the invoice or customer in the ERP'
           WHEN state = 'stopped' THEN 'stopped at InExchange: act in the InExchange portal'
           WHEN state = 'in_doubt' THEN 'send in doubt: check the InExchange portal'
           WHEN COALESCE(inexchange_document_id, '') <> '' THEN 'InExchange reported an error: never resent automatically'
           ELSE 'failed after its last automatic attempt'
       END AS reason,
       inexchange_status, message, attempts, inexchange_document_id, updated_at, dag_run_id
  FROM inexchange_dispatch
 WHERE state IN ('rejected', 'stopped', 'in_doubt')
    OR (state = 'failed' AND (COALESCE(inexchange_document_id, '') <> '' OR attempts >= :max_attempts))
 ORDER BY invoice_date, invoice_number, invoice_id

-- One page of the report table for the "InExchange dispatch" UI page, newest data interval first.
-- Every filter is optional: a NULL parameter matches every row, attention = 0 too. The customer
-- pattern is already lower-cased and LIKE-escaped (backslash) by the caller. total_rows counts
-- every matching row, attention_rows those of them that need a person.
-- needs_person is the definition of needs_attention.sql (and inexchange.pipeline.needs_person),
-- applied to the report row: rejected, stopped, in_doubt, or failed after InExchange received it
-- or after max_attempts attempts. next_retry_at and ledger_state come from the ledger
-- (inexchange_dispatch): when a failed row with attempts left is retried, and where it is now.
WITH report AS (
    SELECT r.invoice_id, r.data_interval_start, r.data_interval_end, r.document_type, r.invoice_number,
           r.customer_number, r.customer_name, r.delivery_type, r.delivery_method, r.state,
           r.inexchange_status, r.sent_at, r.message, r.inexchange_document_id, r.attempts, r.dag_run_id,
           d.next_retry_at, d.state AS ledger_state,
           CASE WHEN r.state IN ('rejected', 'stopped', 'in_doubt')
                  OR (r.state = 'failed' AND (COALESCE(r.inexchange_document_id, '') <> ''
                                              OR r.attempts >= :max_attempts))
                THEN 1 ELSE 0 END AS needs_person
      FROM inexchange_report r
      LEFT JOIN inexchange_dispatch d ON d.invoice_id = r.invoice_id
)
SELECT invoice_id, data_interval_start, data_interval_end, document_type, invoice_number,
       customer_number, customer_name, delivery_type, delivery_method, state, inexchange_status,
       sent_at, message, inexchange_document_id, attempts, dag_run_id, next_retry_at, ledger_state,
       needs_person,
       COUNT(*) OVER () AS total_rows,
       SUM(needs_person) OVER () AS attention_rows
  FROM report
 WHERE (:interval_from IS NULL OR data_interval_start >= :interval_from)
   AND (:interval_until IS NULL OR data_interval_start < :interval_until)
   AND (:state IS NULL OR state = :state)
   AND (:attention = 0 OR needs_person = 1)
   AND (:customer IS NULL
        OR LOWER(customer_number) LIKE :customer ESCAPE '\'
        OR LOWER(customer_name) LIKE :customer ESCAPE '\')
 ORDER BY data_interval_start DESC, invoice_number, invoice_id
 LIMIT :row_limit OFFSET :row_offset

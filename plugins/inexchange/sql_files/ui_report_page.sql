-- One page of the report table for the "InExchange dispatch" UI page, newest data interval first.
-- Every filter is optional: a NULL parameter matches every row. The customer pattern is already
-- lower-cased and LIKE-escaped (backslash) by the caller. total_rows counts every matching row.
SELECT invoice_id, data_interval_start, data_interval_end, document_type, invoice_number,
       customer_number, customer_name, delivery_type, delivery_method, state, inexchange_status,
       sent_at, message, inexchange_document_id, attempts, dag_run_id,
       COUNT(*) OVER () AS total_rows
  FROM inexchange_report
 WHERE (:interval_from IS NULL OR data_interval_start >= :interval_from)
   AND (:interval_until IS NULL OR data_interval_start < :interval_until)
   AND (:state IS NULL OR state = :state)
   AND (:customer IS NULL
        OR LOWER(customer_number) LIKE :customer ESCAPE '\'
        OR LOWER(customer_name) LIKE :customer ESCAPE '\')
 ORDER BY data_interval_start DESC, invoice_number, invoice_id
 LIMIT :row_limit OFFSET :row_offset

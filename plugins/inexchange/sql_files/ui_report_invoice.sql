-- Every report row of one invoice (one per data interval that dispatched it), newest first.
SELECT invoice_id, data_interval_start, data_interval_end, document_type, invoice_number,
       customer_number, customer_name, delivery_type, delivery_method, state, inexchange_status,
       sent_at, message, inexchange_document_id, attempts, dag_run_id
  FROM inexchange_report
 WHERE invoice_id = :invoice_id
 ORDER BY data_interval_start DESC

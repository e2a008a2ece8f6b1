-- Upsert the report rows of one data interval from the ledger ("Elektroniska utskick").
INSERT INTO inexchange_report (
    invoice_id, data_interval_start, data_interval_end, document_type, invoice_number,
    customer_number, customer_name, delivery_type, delivery_method, state, inexchange_status,
    sent_at, message, inexchange_document_id, attempts, dag_run_id)
SELECT invoice_id, :data_interval_start, :data_interval_end,
       CASE invoice_type WHEN 'credit' THEN 'Kreditfaktura' ELSE 'Kundfaktura' END,
       invoice_number, customer_number, customer_name, 'InExchange', delivery_method, state,
       inexchange_status, sent_at, message, inexchange_document_id, attempts, :dag_run_id
  FROM inexchange_dispatch
 WHERE invoice_date >= :start_date
   AND invoice_date < :end_date
ON CONFLICT (invoice_id, data_interval_start) DO UPDATE SET
    data_interval_end = excluded.data_interval_end,
    document_type = excluded.document_type,
    invoice_number = excluded.invoice_number,
    customer_number = excluded.customer_number,
    customer_name = excluded.customer_name,
    delivery_method = excluded.delivery_method,
    state = excluded.state,
    inexchange_status = excluded.inexchange_status,
    sent_at = excluded.sent_at,
    message = excluded.message,
    inexchange_document_id = excluded.inexchange_document_id,
    attempts = excluded.attempts,
    dag_run_id = excluded.dag_run_id

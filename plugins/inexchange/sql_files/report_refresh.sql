-- Upsert the report rows of one run from the ledger ("Elektroniska utskick"): the invoices of its
-- data interval, or a manual run's listed invoices. A row that already says the same is left
-- alone, so a rerun changes nothing that is already true (its dag_run_id stays the run that last
-- changed it).
INSERT INTO inexchange_report (
    invoice_id, data_interval_start, data_interval_end, document_type, invoice_number,
    customer_number, customer_name, delivery_type, delivery_method, state, inexchange_status,
    sent_at, message, inexchange_document_id, attempts, dag_run_id)
SELECT invoice_id, :data_interval_start, :data_interval_end,
       CASE invoice_type WHEN 'credit' THEN 'Kreditfaktura' ELSE 'Kundfaktura' END,
       invoice_number, customer_number, customer_name, 'InExchange', delivery_method, state,
       inexchange_status, sent_at, message, inexchange_document_id, attempts, :dag_run_id
  FROM inexchange_dispatch
 WHERE ((:selected = 0 AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (:selected = 1 AND invoice_number IN :numbers))
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
-- written only when a column differs: the columns compared as one row value, NULL equal to NULL
-- (IS DISTINCT FROM compares row values on SQLite and PostgreSQL alike)
 WHERE (inexchange_report.data_interval_end, inexchange_report.document_type, inexchange_report.invoice_number,
        inexchange_report.customer_number, inexchange_report.customer_name, inexchange_report.delivery_method,
        inexchange_report.state, inexchange_report.inexchange_status, inexchange_report.sent_at,
        inexchange_report.message, inexchange_report.inexchange_document_id, inexchange_report.attempts)
       IS DISTINCT FROM
       (excluded.data_interval_end, excluded.document_type, excluded.invoice_number,
        excluded.customer_number, excluded.customer_name, excluded.delivery_method,
        excluded.state, excluded.inexchange_status, excluded.sent_at,
        excluded.message, excluded.inexchange_document_id, excluded.attempts)

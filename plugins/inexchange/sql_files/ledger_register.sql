-- Put an extracted invoice in the ledger as pending. A row already there is left alone unless it
-- was never validated, or rejected (when the run re-checks rejected rows): the ERP row may have
-- been fixed, so it is checked again. A send left in doubt ('in_doubt') is taken again only when a
-- person lists the invoice in a manual run (listed = 1), after checking InExchange's portal.
-- Many invoices in one statement: the rows mark below becomes their bound values, in the order of the
-- column list (each row's state 'pending', attempts 0, created_at and updated_at the same now).
INSERT INTO inexchange_dispatch (
    invoice_id, invoice_number, invoice_type, customer_id, customer_number, customer_name,
    invoice_date, currency, total_amount, erp_document_id, state, attempts, created_at, updated_at,
    dag_run_id, data_interval_start, data_interval_end)
VALUES /* rows */
ON CONFLICT (invoice_id) DO UPDATE SET
    invoice_number = excluded.invoice_number,
    customer_number = excluded.customer_number,
    customer_name = excluded.customer_name,
    invoice_date = excluded.invoice_date,
    currency = excluded.currency,
    total_amount = excluded.total_amount,
    state = 'pending',
    message = NULL,
    updated_at = excluded.updated_at,
    dag_run_id = excluded.dag_run_id,
    data_interval_start = excluded.data_interval_start,
    data_interval_end = excluded.data_interval_end
 WHERE inexchange_dispatch.state = 'pending'
    OR (inexchange_dispatch.state = 'rejected' AND :retry_rejected = 1)
    OR (inexchange_dispatch.state = 'in_doubt' AND :listed = 1)

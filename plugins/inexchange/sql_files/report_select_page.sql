-- One page of a run's report rows ("Elektroniska utskick") in invoice_id order: keyset paging on the
-- primary key (invoice_id, data_interval_start), each page starting at the id after the previous
-- page's last. report_select.sql reads the same rows at once, in invoice number order.
SELECT invoice_id, document_type, invoice_number, customer_number, customer_name, delivery_type,
       delivery_method, state, inexchange_status, sent_at, message, inexchange_document_id, attempts
  FROM inexchange_report
 WHERE invoice_id >= :from_id
   AND data_interval_start = :data_interval_start
 ORDER BY invoice_id
 LIMIT :limit

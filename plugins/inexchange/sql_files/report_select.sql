SELECT document_type, invoice_number, customer_number, customer_name, delivery_type,
       delivery_method, state, inexchange_status, sent_at, message, inexchange_document_id, attempts
  FROM inexchange_report
 WHERE data_interval_start = :data_interval_start
 ORDER BY invoice_number

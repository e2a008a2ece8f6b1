SELECT invoice_id, inexchange_document_id, state, inexchange_status
  FROM inexchange_dispatch
 WHERE inexchange_document_id IN :document_ids

SELECT invoice_id, state
  FROM inexchange_dispatch
 WHERE invoice_id IN :ids

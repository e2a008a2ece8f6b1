-- The state changes of one invoice in the order they happened.
SELECT history_id, invoice_id, from_state, to_state, inexchange_status, message, source,
       changed_at, dag_run_id
  FROM inexchange_dispatch_history
 WHERE invoice_id = :invoice_id
 ORDER BY changed_at, history_id

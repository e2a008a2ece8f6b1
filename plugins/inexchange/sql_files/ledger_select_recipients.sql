-- The recipients this run resolved already, of the customers asked about.
SELECT customer_id, inputs, resolved
  FROM inexchange_recipient
 WHERE dag_run_id = :dag_run_id
   AND customer_id IN :ids

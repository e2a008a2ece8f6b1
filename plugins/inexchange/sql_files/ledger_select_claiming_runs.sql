-- Other runs that hold claims: the runs whose rows are left in 'submitting' (a worker died, a reply
-- was lost, a send stayed in doubt). The submit task asks Airflow which of them have ended: their
-- rows can be reconciled at once instead of after the lease.
SELECT DISTINCT dag_run_id
  FROM inexchange_dispatch
 WHERE state = 'submitting'
   AND dag_run_id IS NOT NULL
   AND dag_run_id <> :dag_run_id
 ORDER BY dag_run_id

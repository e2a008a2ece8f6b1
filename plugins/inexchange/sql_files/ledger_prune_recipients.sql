-- Forget the recipients of other runs once they are older than a cutoff (a run's submit tasks end
-- long before it): the table holds about one row per customer and recent run.
DELETE FROM inexchange_recipient
 WHERE dag_run_id <> :dag_run_id
   AND resolved_at < :cutoff

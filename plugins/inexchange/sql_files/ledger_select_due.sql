-- Rows to submit, in one shard of the work: a range of invoice ids, or the invoice id modulo the
-- number of shards (one shard: all). One SELECT per state, so that each reads its state's range of
-- ids through ix_inexchange_dispatch_state_id, whatever the size of the day:
-- * ready rows of the interval (of a manual run's list instead, when it has one);
-- * failed rows of any interval (of the list) whose retry is due, or at once in a run a person
--   started (manual or backfill); a listed row also after its last automatic attempt. A failed
--   row that InExchange already received (it has a document id: InExchange reported Error while
--   delivering it) is never sent again automatically; it needs a person;
-- * rows left in 'submitting' (a worker died or a reply was lost) that must be reconciled first:
--   those of this run (an earlier try of this very task) once their send can no longer be in
--   flight (older than the settle time); those of another run that has ended (finished_runs, which
--   Airflow says are done), after the settle time too; and any whose claim is older than the lease,
--   so that a row another run is sending right now is never touched.
SELECT *
  FROM inexchange_dispatch
 WHERE state = 'ready' AND invoice_id BETWEEN :first_id AND :last_id
   AND ((:selected = 0 AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (:selected = 1 AND invoice_number IN :numbers))
   AND (:shards = 1 OR invoice_id % :shards = :shard)
UNION ALL
SELECT *
  FROM inexchange_dispatch
 WHERE state = 'failed' AND invoice_id BETWEEN :first_id AND :last_id
   AND inexchange_document_id IS NULL
   AND (:selected = 0 OR invoice_number IN :numbers)
   AND (next_retry_at IS NULL OR next_retry_at <= :now OR :retry_now = 1)
   AND (attempts < :max_attempts OR :selected = 1)
   AND (:shards = 1 OR invoice_id % :shards = :shard)
UNION ALL
SELECT *
  FROM inexchange_dispatch
 WHERE state = 'submitting' AND invoice_id BETWEEN :first_id AND :last_id
   AND (((dag_run_id = :dag_run_id OR dag_run_id IN :finished_runs) AND updated_at < :settle_cutoff)
        OR updated_at < :lease_cutoff)
   AND (:shards = 1 OR invoice_id % :shards = :shard)
 ORDER BY invoice_id

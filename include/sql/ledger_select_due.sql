-- Rows to submit, in one shard of the work (the invoice id modulo the number of shards):
-- * ready rows of the interval;
-- * failed rows of any interval whose retry is due. A failed row that InExchange already received
--   (it has a document id: InExchange reported Error while delivering it) is never sent again
--   automatically; it needs a person;
-- * rows left in 'submitting' (a worker died or a reply was lost) that must be reconciled first:
--   those of this run (an earlier try of this very task) once their send can no longer be in
--   flight (older than the settle time), and any whose claim is older than the lease, so that a
--   row another run is sending right now is never touched.
SELECT *
  FROM inexchange_dispatch
 WHERE ((state = 'ready' AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (state = 'failed' AND inexchange_document_id IS NULL
            AND (next_retry_at IS NULL OR next_retry_at <= :now) AND attempts < :max_attempts)
        OR (state = 'submitting' AND ((dag_run_id = :dag_run_id AND updated_at < :settle_cutoff)
                                     OR updated_at < :lease_cutoff)))
   AND (:shards = 1 OR invoice_id % :shards = :shard)
 ORDER BY invoice_id

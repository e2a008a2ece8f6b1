-- Rows to submit: ready rows of the interval, failed rows of any interval whose retry is due, and
-- rows left in 'submitting' (a worker died or a reply was lost) that must be reconciled first.
SELECT *
  FROM inexchange_dispatch
 WHERE (state = 'ready' AND invoice_date >= :start_date AND invoice_date < :end_date)
    OR (state = 'failed' AND (next_retry_at IS NULL OR next_retry_at <= :now) AND attempts < :max_attempts)
    OR state = 'submitting'
 ORDER BY invoice_id

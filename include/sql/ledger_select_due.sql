-- Rows to submit: ready rows of the interval, failed rows of any interval whose retry is due, and
-- rows left in 'submitting' (a worker died or a reply was lost) that must be reconciled first.
-- A failed row that InExchange already received (it has a document id: InExchange reported Error
-- while delivering it) is never sent again automatically; it needs a person.
SELECT *
  FROM inexchange_dispatch
 WHERE (state = 'ready' AND invoice_date >= :start_date AND invoice_date < :end_date)
    OR (state = 'failed' AND inexchange_document_id IS NULL
        AND (next_retry_at IS NULL OR next_retry_at <= :now) AND attempts < :max_attempts)
    OR state = 'submitting'
 ORDER BY invoice_id

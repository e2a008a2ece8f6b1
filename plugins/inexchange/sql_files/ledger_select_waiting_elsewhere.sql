-- Invoices of other intervals still waiting for InExchange (their run's sensor timed out): the next
-- run checks them again before it extracts new work.
SELECT *
  FROM inexchange_dispatch
 WHERE state = 'waiting'
   AND (invoice_date < :start_date OR invoice_date >= :end_date)
 ORDER BY invoice_id

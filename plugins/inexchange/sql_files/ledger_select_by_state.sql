-- Ledger rows of the run in the given states: those of the interval, or a manual run's listed invoices.
SELECT *
  FROM inexchange_dispatch
 WHERE state IN :states
   AND ((:selected = 0 AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (:selected = 1 AND invoice_number IN :numbers))
 ORDER BY invoice_id

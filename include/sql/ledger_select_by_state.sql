-- Ledger rows of the interval in the given states.
SELECT *
  FROM inexchange_dispatch
 WHERE state IN :states
   AND invoice_date >= :start_date
   AND invoice_date < :end_date
 ORDER BY invoice_id

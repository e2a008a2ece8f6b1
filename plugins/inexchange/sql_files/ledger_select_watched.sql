-- Ledger rows the run's delivery sensor follows: those waiting of the interval (of a manual run's
-- list), and those waiting that this run moved last, whatever their day (an earlier day's invoice
-- it sent again, or whose claim, left by a run that ended, it reconciled).
SELECT *
  FROM inexchange_dispatch
 WHERE state = 'waiting'
   AND ((:selected = 0 AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (:selected = 1 AND invoice_number IN :numbers)
        OR dag_run_id = :dag_run_id)
 ORDER BY invoice_id

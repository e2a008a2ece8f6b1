-- How many of the run's ledger rows are in the given states, and their first and last invoice_id
-- (NULLs when there are none): the interval's rows, or a manual run's listed invoices. Bounds the
-- key range that ledger_select_page.sql walks, so a page never scans the ledger's other days.
SELECT COUNT(*) AS row_count, MIN(invoice_id) AS first_id, MAX(invoice_id) AS last_id
  FROM inexchange_dispatch
 WHERE state IN :states
   AND ((:selected = 0 AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (:selected = 1 AND invoice_number IN :numbers))

-- One page of the run's ledger rows in the given states (the interval's rows, or a manual run's
-- listed invoices), in invoice_id order: keyset paging, each page starting at the id after the
-- previous page's last and ending at the run's last id (ledger_select_id_range.sql).
-- The state is compared as an expression, (state || ''), so that the planner walks the primary key
-- from the page's first id in invoice_id order and stops after a page of rows; compared as the bare
-- column, SQLite takes the (state, invoice_date) index and sorts every remaining row of the state
-- for each page, which makes paging through a day quadratic in its size.
SELECT *
  FROM inexchange_dispatch
 WHERE invoice_id >= :from_id
   AND invoice_id <= :to_id
   AND (state || '') IN :states
   AND ((:selected = 0 AND invoice_date >= :start_date AND invoice_date < :end_date)
        OR (:selected = 1 AND invoice_number IN :numbers))
 ORDER BY invoice_id
 LIMIT :limit

-- Rows of every interval whose send stayed in doubt after its look-ups ('in_doubt'): the next run
-- looks each up once more by its ERP id and records what InExchange has; it never sends them again.
SELECT *
  FROM inexchange_dispatch
 WHERE state = 'in_doubt'
 ORDER BY invoice_id

-- The history rows of ledger changes, many in one statement (the rows mark becomes their bound values,
-- in the order of the column list).
INSERT INTO inexchange_dispatch_history (
    history_id, invoice_id, from_state, to_state, inexchange_status, message, source, changed_at, dag_run_id,
    run_type, try_number)
VALUES /* rows */

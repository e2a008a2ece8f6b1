-- Keep recipients the run resolved (the rows mark becomes their bound values); a customer resolved
-- again (its values changed in the ERP meanwhile) replaces its row.
INSERT INTO inexchange_recipient (dag_run_id, customer_id, inputs, resolved, resolved_at)
VALUES /* rows */
ON CONFLICT (dag_run_id, customer_id) DO UPDATE SET
    inputs = excluded.inputs,
    resolved = excluded.resolved,
    resolved_at = excluded.resolved_at

-- Bring report rows of other runs up to date with the ledger: an invoice of an earlier interval
-- whose status a later run recorded (recheck, a manual resend) must not keep an old state in its
-- own interval's report. Only rows that differ are written; they name the run that changed them.
UPDATE inexchange_report
   SET state = d.state,
       inexchange_status = d.inexchange_status,
       sent_at = d.sent_at,
       message = d.message,
       delivery_method = d.delivery_method,
       inexchange_document_id = d.inexchange_document_id,
       attempts = d.attempts,
       dag_run_id = :dag_run_id
  FROM inexchange_dispatch d
 WHERE d.invoice_id = inexchange_report.invoice_id
   AND (d.state IS DISTINCT FROM inexchange_report.state
        OR d.inexchange_status IS DISTINCT FROM inexchange_report.inexchange_status
        OR d.sent_at IS DISTINCT FROM inexchange_report.sent_at
        OR d.message IS DISTINCT FROM inexchange_report.message
        OR d.delivery_method IS DISTINCT FROM inexchange_report.delivery_method
        OR d.inexchange_document_id IS DISTINCT FROM inexchange_report.inexchange_document_id
        OR d.attempts IS DISTINCT FROM inexchange_report.attempts)

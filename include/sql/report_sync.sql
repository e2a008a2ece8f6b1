-- Bring report rows of other runs up to date with the ledger: an invoice of an earlier interval
-- whose status a later run recorded (recheck, a manual resend) must not keep an old state in its
-- own interval's report. Only rows that differ are written; they name the run that changed them.
UPDATE inexchange_report
   SET state = (SELECT d.state FROM inexchange_dispatch d WHERE d.invoice_id = inexchange_report.invoice_id),
       inexchange_status = (SELECT d.inexchange_status FROM inexchange_dispatch d
                             WHERE d.invoice_id = inexchange_report.invoice_id),
       sent_at = (SELECT d.sent_at FROM inexchange_dispatch d WHERE d.invoice_id = inexchange_report.invoice_id),
       message = (SELECT d.message FROM inexchange_dispatch d WHERE d.invoice_id = inexchange_report.invoice_id),
       delivery_method = (SELECT d.delivery_method FROM inexchange_dispatch d
                           WHERE d.invoice_id = inexchange_report.invoice_id),
       inexchange_document_id = (SELECT d.inexchange_document_id FROM inexchange_dispatch d
                                  WHERE d.invoice_id = inexchange_report.invoice_id),
       attempts = (SELECT d.attempts FROM inexchange_dispatch d WHERE d.invoice_id = inexchange_report.invoice_id),
       dag_run_id = :dag_run_id
 WHERE EXISTS (
       SELECT 1
         FROM inexchange_dispatch d
        WHERE d.invoice_id = inexchange_report.invoice_id
          AND (d.state IS DISTINCT FROM inexchange_report.state
               OR d.inexchange_status IS DISTINCT FROM inexchange_report.inexchange_status
               OR d.sent_at IS DISTINCT FROM inexchange_report.sent_at
               OR d.message IS DISTINCT FROM inexchange_report.message
               OR d.delivery_method IS DISTINCT FROM inexchange_report.delivery_method
               OR d.inexchange_document_id IS DISTINCT FROM inexchange_report.inexchange_document_id
               OR d.attempts IS DISTINCT FROM inexchange_report.attempts))

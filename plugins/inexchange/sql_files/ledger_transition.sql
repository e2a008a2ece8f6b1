-- Move one invoice from one of the expected states to a new one (compare-and-set): a row that
-- another worker moved meanwhile is not touched, and the caller sees rowcount 0. The expected states
-- are two fixed parameters (the same state twice when only one is expected), so the statement
-- compiles once and is reused. A status poll also names the InExchange status it saw
-- (check_status set), so that two pollers never both record the same change.
UPDATE inexchange_dispatch
   SET state = :to_state,
       message = :message,
       delivery_method = COALESCE(:delivery_method, delivery_method),
       document_uri = COALESCE(:document_uri, document_uri),
       inexchange_document_id = COALESCE(:inexchange_document_id, inexchange_document_id),
       inexchange_status = COALESCE(:inexchange_status, inexchange_status),
       status_time = COALESCE(:status_time, status_time),
       attempts = attempts + :attempt,
       -- failed look-ups of a send in doubt: counted while the row stays submitting, reset when it moves on
       doubt_lookups = CASE WHEN :stays_submitting = 1 THEN doubt_lookups + :doubt_lookup ELSE 0 END,
       next_retry_at = :next_retry_at,
       submitted_at = COALESCE(:submitted_at, submitted_at),
       sent_at = COALESCE(:sent_at, sent_at),
       updated_at = :now,
       dag_run_id = :dag_run_id
 WHERE invoice_id = :invoice_id
   AND state IN (:from_state, :other_from_state)
   AND (:check_status = 0 OR COALESCE(inexchange_status, '') = :expected_status)

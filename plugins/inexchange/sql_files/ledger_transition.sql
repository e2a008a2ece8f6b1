-- Move invoices, each from one of its expected states to its new one (compare-and-set), in one
-- statement: a row that another worker moved meanwhile is not touched, and is not among the ids
-- returned. The changes are the rows of `change` (one per invoice; the rows mark becomes their bound
-- values). Each names two expected states (the same state twice when only one is expected). A
-- status poll also names the InExchange status it saw (check_status set), so that two pollers never
-- both record the same change.
UPDATE inexchange_dispatch
   SET state = change.to_state,
       message = change.message,
       delivery_method = COALESCE(change.delivery_method, inexchange_dispatch.delivery_method),
       document_uri = COALESCE(change.document_uri, inexchange_dispatch.document_uri),
       inexchange_document_id = COALESCE(change.inexchange_document_id, inexchange_dispatch.inexchange_document_id),
       inexchange_status = COALESCE(change.inexchange_status, inexchange_dispatch.inexchange_status),
       status_time = COALESCE(change.status_time, inexchange_dispatch.status_time),
       attempts = inexchange_dispatch.attempts + change.attempt,
       -- failed look-ups of a send in doubt: counted while the row stays submitting, reset when it moves on
       doubt_lookups = CASE WHEN change.stays_submitting = 1
                            THEN inexchange_dispatch.doubt_lookups + change.doubt_lookup ELSE 0 END,
       next_retry_at = change.next_retry_at,
       submitted_at = COALESCE(change.submitted_at, inexchange_dispatch.submitted_at),
       sent_at = COALESCE(change.sent_at, inexchange_dispatch.sent_at),
       updated_at = :now,
       dag_run_id = :dag_run_id
  FROM (
        -- the columns' names and types, then the changes (a statement that begins with WITH would
        -- escape the transaction of Python's sqlite3, which begins one before UPDATE only)
        SELECT CAST(NULL AS BIGINT) AS invoice_id, CAST(NULL AS VARCHAR(20)) AS from_state,
               CAST(NULL AS VARCHAR(20)) AS other_from_state, CAST(NULL AS VARCHAR(20)) AS to_state,
               CAST(NULL AS TEXT) AS message, CAST(NULL AS VARCHAR(20)) AS delivery_method,
               CAST(NULL AS VARCHAR(200)) AS document_uri, CAST(NULL AS VARCHAR(100)) AS inexchange_document_id,
               CAST(NULL AS VARCHAR(50)) AS inexchange_status, CAST(NULL AS VARCHAR(32)) AS status_time,
               CAST(NULL AS INTEGER) AS attempt, CAST(NULL AS INTEGER) AS stays_submitting,
               CAST(NULL AS INTEGER) AS doubt_lookup, CAST(NULL AS VARCHAR(32)) AS next_retry_at,
               CAST(NULL AS VARCHAR(32)) AS submitted_at, CAST(NULL AS VARCHAR(32)) AS sent_at,
               CAST(NULL AS INTEGER) AS check_status, CAST(NULL AS VARCHAR(50)) AS expected_status
         WHERE 1 = 0
        UNION ALL
        VALUES /* rows */
       ) AS change
 WHERE inexchange_dispatch.invoice_id = change.invoice_id
   AND inexchange_dispatch.state IN (change.from_state, change.other_from_state)
   AND (change.check_status = 0 OR COALESCE(inexchange_dispatch.inexchange_status, '') = change.expected_status)
RETURNING inexchange_dispatch.invoice_id

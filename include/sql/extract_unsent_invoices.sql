-- Posted invoices of the data interval (or a manual run's listed numbers, whatever their date)
-- whose customer is billed through InExchange.
-- Invoices already sent or in flight are kept out by the ledger upsert (ledger_register.sql).
SELECT i.invoice_id,
       i.invoice_number,
       i.invoice_type,
       i.customer_id,
       c.customer_number,
       c.name AS customer_name,
       i.invoice_date,
       i.currency,
       i.total_amount
  FROM customer_invoice i
  JOIN customer c ON c.customer_id = i.customer_id
 WHERE i.status = 'posted'
   AND c.billing_method = :billing_method
   AND ((:selected = 0 AND i.invoice_date >= :start_date AND i.invoice_date < :end_date)
        OR (:selected = 1 AND i.invoice_number IN :numbers))
 ORDER BY i.invoice_id

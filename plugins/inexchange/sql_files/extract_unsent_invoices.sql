-- Posted invoices of the data interval (or a manual run's listed numbers, whatever their date)
-- whose customer is billed through InExchange, and those whose customer row is missing (a NULL or
-- dangling customer_id): an invoice without a customer has no billing method, but it is an error
-- in the ERP that a person must hear about, so it is extracted and rejected by validation with the
-- reason. Invoices of customers billed otherwise are not InExchange invoices and are left out.
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
  LEFT JOIN customer c ON c.customer_id = i.customer_id
 WHERE i.status = 'posted'
   AND (c.billing_method = :billing_method OR c.customer_id IS NULL)
   AND ((:selected = 0 AND i.invoice_date >= :start_date AND i.invoice_date < :end_date)
        OR (:selected = 1 AND i.invoice_number IN :numbers))
 ORDER BY i.invoice_id

SELECT invoice_id, invoice_number, customer_id, invoice_type, status, invoice_date, due_date,
       currency, amount_ex_vat, vat_amount, total_amount, your_reference, order_number,
       credited_invoice_number
  FROM customer_invoice
 WHERE invoice_id IN :ids

SELECT invoice_id, line_number, article_number, description, quantity, unit, unit_price, vat_rate,
       line_amount /* optional columns */
  FROM customer_invoice_line
 WHERE invoice_id IN :ids
 ORDER BY invoice_id, line_number

-- Invoice numbers used by more than one invoice of the seller (they must be unique).
SELECT invoice_number
  FROM customer_invoice
 WHERE invoice_number IN :numbers
 GROUP BY invoice_number
HAVING COUNT(*) > 1

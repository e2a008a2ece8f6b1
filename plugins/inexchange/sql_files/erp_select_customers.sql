SELECT customer_id, customer_number, name, is_active, is_private_person, org_number, vat_number,
       country_code, language, currency, billing_method, invoice_email, gln, marking,
       attach_documents, street, postal_code, city /* optional columns */
  FROM customer
 WHERE customer_id IN :ids

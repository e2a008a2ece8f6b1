SELECT invoice_id, file_name, mime_type, content
  FROM invoice_attachment
 WHERE invoice_id IN :ids
 ORDER BY invoice_id, file_name

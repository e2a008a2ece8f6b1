-- Insert one invoice attachment of the ERP adapter contract (see erp_schema.sql); run with executemany.
INSERT INTO invoice_attachment (invoice_id, file_name, mime_type, content)
VALUES (:invoice_id, :file_name, :mime_type, :content)

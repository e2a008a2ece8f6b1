-- Insert one customer of the ERP adapter contract (see erp_schema.sql); run with executemany.
INSERT INTO customer (
    customer_id, customer_number, name, is_active, is_private_person, org_number, vat_number,
    country_code, language, currency, billing_method, invoice_email, gln, marking,
    attach_documents, street, postal_code, city, peppol_id
) VALUES (
    :customer_id, :customer_number, :name, :is_active, :is_private_person, :org_number, :vat_number,
    :country_code, :language, :currency, :billing_method, :invoice_email, :gln, :marking,
    :attach_documents, :street, :postal_code, :city, :peppol_id
)

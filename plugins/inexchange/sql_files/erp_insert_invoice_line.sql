-- Insert one invoice line of the ERP adapter contract (see erp_schema.sql); run with executemany.
INSERT INTO customer_invoice_line (
    invoice_id, line_number, article_number, description, quantity, unit, unit_price, vat_rate, line_amount,
    vat_category, vat_exemption_reason_code, vat_exemption_reason
) VALUES (
    :invoice_id, :line_number, :article_number, :description, :quantity, :unit, :unit_price, :vat_rate, :line_amount,
    :vat_category, :vat_exemption_reason_code, :vat_exemption_reason
)

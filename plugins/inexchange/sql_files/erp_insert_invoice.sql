-- Insert one customer invoice header of the ERP adapter contract (see erp_schema.sql); run with executemany.
INSERT INTO customer_invoice (
    invoice_id, invoice_number, customer_id, invoice_type, status, invoice_date, due_date, currency,
    amount_ex_vat, vat_amount, total_amount, your_reference, order_number, credited_invoice_number
) VALUES (
    :invoice_id, :invoice_number, :customer_id, :invoice_type, :status, :invoice_date, :due_date, :currency,
    :amount_ex_vat, :vat_amount, :total_amount, :your_reference, :order_number, :credited_invoice_number
)

-- ERP adapter contract: the four tables the dispatch pipeline reads (runs unchanged on SQLite and PostgreSQL).
-- Map your own ERP onto these tables (or views with the same names and columns).
--
-- customer: one row per ERP customer
--   customer_id            BIGINT        primary key, the ERP's internal id (given explicitly, no autoincrement)
--   customer_number        VARCHAR(30)   customer number as shown in the ERP ("Kundnummer", e.g. 4367), unique
--   name                   VARCHAR(200)  customer name ("Namn")
--   is_active              BOOLEAN       false when the customer is deactivated ("Aktiv")
--   is_private_person      BOOLEAN       true for a private person ("Privatperson"); org_number then holds a personnummer
--   org_number             VARCHAR(20)   organisation number as the ERP shows it ("212000-1553"); foreign customers: national id
--   vat_number             VARCHAR(20)   VAT number ("SE212000155301"; foreign customers with their country prefix)
--   country_code           VARCHAR(2)    ISO 3166-1 alpha-2 country ("SE")
--   language               VARCHAR(5)    language of the customer's documents ("sv", "en")
--   currency               VARCHAR(3)    ISO 4217 currency of the customer's ledger ("SEK")
--   billing_method         VARCHAR(50)   "Faktureringsmetod"; only "InExchange utskrift (API)" is sent through InExchange
--   invoice_email          VARCHAR(254)  "Faktura e-post", where InExchange may deliver a PDF
--   gln                    VARCHAR(20)   default GLN of the buyer (13 digits), routes the e-invoice to a department
--   marking                VARCHAR(500)  "Märkning", the buyer's reference to print on every invoice
--   attach_documents       BOOLEAN       "Bifoga dokument vid digitalt utskick": send the invoice's attachments
--   street                 VARCHAR(200)  invoice address, street or box
--   postal_code            VARCHAR(10)   invoice address, postal code ("441 81")
--   city                   VARCHAR(100)  invoice address, city
--   peppol_id              VARCHAR(60)   optional: the buyer's Peppol address, scheme:identifier ("0088:7300010000001");
--                                        NULL: from GLN, org number or VAT number (docs/erp-contract.md)
--
-- customer_invoice: one row per customer invoice (debit) or credit note (credit)
--   invoice_id             BIGINT        primary key, the ERP's internal id (given explicitly)
--   invoice_number         VARCHAR(30)   invoice number as shown in the ERP ("Fakt.nr"), unique
--   customer_id            BIGINT        the invoiced customer (references customer)
--   invoice_type           VARCHAR(10)   "debit" or "credit" ("Debet"/"Kredit")
--   status                 VARCHAR(10)   "posted" ("Verifikat", may be sent) or "draft" (never sent)
--   invoice_date           DATE          invoice date; the pipeline selects invoices by this date
--   due_date               DATE          due date ("Förfallodatum")
--   currency               VARCHAR(3)    ISO 4217 currency of the amounts
--   amount_ex_vat          NUMERIC(18,2) sum of the line amounts, negative on a credit note
--   vat_amount             NUMERIC(18,2) VAT, per rate rounded to two decimals, negative on a credit note
--   total_amount           NUMERIC(18,2) amount_ex_vat + vat_amount, negative on a credit note
--   your_reference         VARCHAR(100)  the buyer's reference person ("Er referens")
--   order_number           VARCHAR(50)   the buyer's order number, when given
--   credited_invoice_number VARCHAR(30)  on a credit note: the invoice_number of the debit invoice it credits
--
-- customer_invoice_line: the lines of an invoice
--   invoice_id             BIGINT        the invoice (references customer_invoice)
--   line_number            INTEGER       1, 2, ... within the invoice; primary key with invoice_id
--   article_number         VARCHAR(30)   article number ("Artikelnr")
--   description            VARCHAR(200)  line text
--   quantity               NUMERIC(18,4) quantity, negative on a credit note
--   unit                   VARCHAR(10)   unit ("st", "tim", "kg", "m", "mån", "dag")
--   unit_price             NUMERIC(18,4) price per unit excluding VAT, never negative
--   vat_rate               NUMERIC(5,2)  VAT rate in percent (25.00, 12.00, 6.00, 0.00)
--   line_amount            NUMERIC(18,2) quantity x unit_price rounded half up to two decimals
--   vat_category           VARCHAR(2)    optional: VAT category S, Z, E, AE, K, G or O (UNCL5305); NULL: from the rate
--   vat_exemption_reason_code VARCHAR(30) optional: why no VAT, a VATEX code ("VATEX-EU-132", "VATEX-EU-IC")
--   vat_exemption_reason   VARCHAR(200)  optional: why no VAT, as text ("Undantag från skatteplikt ...")
--
-- invoice_attachment: files sent with the invoice when the customer has attach_documents
--   invoice_id             BIGINT        the invoice (references customer_invoice)
--   file_name              VARCHAR(200)  file name, unique within the invoice; primary key with invoice_id
--   mime_type              VARCHAR(100)  MIME type ("application/pdf", "image/png")
--   content                BYTEA         the file's bytes

CREATE TABLE IF NOT EXISTS customer (
    customer_id BIGINT NOT NULL PRIMARY KEY,
    customer_number VARCHAR(30) NOT NULL,
    name VARCHAR(200) NOT NULL,
    is_active BOOLEAN NOT NULL,
    is_private_person BOOLEAN NOT NULL,
    org_number VARCHAR(20),
    vat_number VARCHAR(20),
    country_code VARCHAR(2) NOT NULL,
    language VARCHAR(5),
    currency VARCHAR(3) NOT NULL,
    billing_method VARCHAR(50) NOT NULL,
    invoice_email VARCHAR(254),
    gln VARCHAR(20),
    marking VARCHAR(500),
    attach_documents BOOLEAN NOT NULL,
    street VARCHAR(200),
    postal_code VARCHAR(10),
    city VARCHAR(100),
    peppol_id VARCHAR(60)
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_customer_customer_number ON customer (customer_number);

CREATE TABLE IF NOT EXISTS customer_invoice (
    invoice_id BIGINT NOT NULL PRIMARY KEY,
    invoice_number VARCHAR(30) NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES customer (customer_id),
    invoice_type VARCHAR(10) NOT NULL CHECK (invoice_type IN ('debit', 'credit')),
    status VARCHAR(10) NOT NULL CHECK (status IN ('draft', 'posted')),
    invoice_date DATE NOT NULL,
    due_date DATE,
    currency VARCHAR(3) NOT NULL,
    amount_ex_vat NUMERIC(18,2) NOT NULL,
    vat_amount NUMERIC(18,2) NOT NULL,
    total_amount NUMERIC(18,2) NOT NULL,
    your_reference VARCHAR(100),
    order_number VARCHAR(50),
    credited_invoice_number VARCHAR(30)
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_customer_invoice_invoice_number ON customer_invoice (invoice_number);

CREATE INDEX IF NOT EXISTS ix_customer_invoice_invoice_date ON customer_invoice (invoice_date);

CREATE INDEX IF NOT EXISTS ix_customer_invoice_customer_id ON customer_invoice (customer_id);

CREATE TABLE IF NOT EXISTS customer_invoice_line (
    invoice_id BIGINT NOT NULL REFERENCES customer_invoice (invoice_id),
    line_number INTEGER NOT NULL,
    article_number VARCHAR(30),
    description VARCHAR(200) NOT NULL,
    quantity NUMERIC(18,4) NOT NULL,
    unit VARCHAR(10),
    unit_price NUMERIC(18,4) NOT NULL,
    vat_rate NUMERIC(5,2) NOT NULL,
    line_amount NUMERIC(18,2) NOT NULL,
    vat_category VARCHAR(2),
    vat_exemption_reason_code VARCHAR(30),
    vat_exemption_reason VARCHAR(200),
    PRIMARY KEY (invoice_id, line_number)
);

CREATE TABLE IF NOT EXISTS invoice_attachment (
    invoice_id BIGINT NOT NULL REFERENCES customer_invoice (invoice_id),
    file_name VARCHAR(200) NOT NULL,
    mime_type VARCHAR(100) NOT NULL,
    content BYTEA NOT NULL,
    PRIMARY KEY (invoice_id, file_name)
);

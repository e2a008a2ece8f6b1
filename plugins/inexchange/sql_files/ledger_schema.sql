-- Dispatch ledger, its history and the "Elektroniska utskick" report table.
-- Created by the pipeline when missing; the same DDL runs on SQLite and PostgreSQL.
-- Timestamps are stored as UTC ISO 8601 text ('2026-11-25T06:00:00.000000Z'), which sorts by time
-- on every database; dates as 'YYYY-MM-DD'.
CREATE TABLE IF NOT EXISTS inexchange_dispatch (
    invoice_id              BIGINT PRIMARY KEY,
    invoice_number          VARCHAR(50)  NOT NULL,
    invoice_type            VARCHAR(10)  NOT NULL,
    customer_id             BIGINT       NOT NULL,
    customer_number         VARCHAR(50),
    customer_name           VARCHAR(200),
    invoice_date            VARCHAR(10)  NOT NULL,
    currency                VARCHAR(3),
    total_amount            NUMERIC(18, 2),
    erp_document_id         VARCHAR(100) NOT NULL,
    state                   VARCHAR(20)  NOT NULL,
    delivery_method         VARCHAR(20),
    document_uri            VARCHAR(200),
    inexchange_document_id  VARCHAR(100),
    inexchange_status       VARCHAR(50),
    status_time             VARCHAR(32),
    message                 TEXT,
    attempts                INTEGER      NOT NULL DEFAULT 0,
    doubt_lookups           INTEGER      NOT NULL DEFAULT 0,
    next_retry_at           VARCHAR(32),
    submitted_at            VARCHAR(32),
    sent_at                 VARCHAR(32),
    created_at              VARCHAR(32)  NOT NULL,
    updated_at              VARCHAR(32)  NOT NULL,
    dag_run_id              VARCHAR(250),
    data_interval_start     VARCHAR(32),
    data_interval_end       VARCHAR(32)
);
CREATE INDEX IF NOT EXISTS ix_inexchange_dispatch_state ON inexchange_dispatch (state, invoice_date);
CREATE INDEX IF NOT EXISTS ix_inexchange_dispatch_state_id ON inexchange_dispatch (state, invoice_id);
CREATE INDEX IF NOT EXISTS ix_inexchange_dispatch_document ON inexchange_dispatch (inexchange_document_id);
CREATE TABLE IF NOT EXISTS inexchange_dispatch_history (
    history_id              VARCHAR(36)  PRIMARY KEY,
    invoice_id              BIGINT       NOT NULL,
    from_state              VARCHAR(20),
    to_state                VARCHAR(20)  NOT NULL,
    inexchange_status       VARCHAR(50),
    message                 TEXT,
    source                  VARCHAR(20)  NOT NULL,
    changed_at              VARCHAR(32)  NOT NULL,
    dag_run_id              VARCHAR(250),
    run_type                VARCHAR(20),
    try_number              INTEGER
);
CREATE INDEX IF NOT EXISTS ix_inexchange_dispatch_history_invoice ON inexchange_dispatch_history (invoice_id, changed_at);
CREATE TABLE IF NOT EXISTS inexchange_report (
    invoice_id              BIGINT       NOT NULL,
    data_interval_start     VARCHAR(32)  NOT NULL,
    data_interval_end       VARCHAR(32)  NOT NULL,
    document_type           VARCHAR(20)  NOT NULL,
    invoice_number          VARCHAR(50)  NOT NULL,
    customer_number         VARCHAR(50),
    customer_name           VARCHAR(200),
    delivery_type           VARCHAR(20)  NOT NULL,
    delivery_method         VARCHAR(20),
    state                   VARCHAR(20)  NOT NULL,
    inexchange_status       VARCHAR(50),
    sent_at                 VARCHAR(32),
    message                 TEXT,
    inexchange_document_id  VARCHAR(100),
    attempts                INTEGER      NOT NULL,
    dag_run_id              VARCHAR(250),
    PRIMARY KEY (invoice_id, data_interval_start)
);
-- each customer's InExchange recipient as one run resolved it (look-up, delivery method, invoice
-- checks), so that the run's other submit batches do not look it up again; `inputs` holds the
-- customer's values the resolution read, and a row whose inputs differ is resolved again
CREATE TABLE IF NOT EXISTS inexchange_recipient (
    dag_run_id              VARCHAR(250) NOT NULL,
    customer_id             BIGINT       NOT NULL,
    inputs                  TEXT         NOT NULL,
    resolved                TEXT         NOT NULL,
    resolved_at             VARCHAR(32)  NOT NULL,
    PRIMARY KEY (dag_run_id, customer_id)
);

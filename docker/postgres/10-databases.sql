-- Runs once, when the PostgreSQL volume is first initialised (as POSTGRES_USER, who owns them).
-- "airflow" (POSTGRES_DB) holds the Airflow metadata; "inexchange" holds the ledger and the
-- "Elektroniska utskick" report (connection inexchange_reporting); "erp_demo" is the demo ERP
-- filled by the erp-demo service of the simulator profile.
CREATE DATABASE inexchange;
CREATE DATABASE erp_demo;

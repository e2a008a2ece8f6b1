"""The test suite's helpers, one package (``tests/`` is on ``sys.path`` through ``tests/conftest.py``).

* :mod:`.support`: the PostgreSQL server, the seller, generated ERP files, connection values;
* :mod:`.unit_fixtures`: the stubbed API's base URL, token and connection of the unit tests;
* :mod:`.erp_rows`: ERP rows for the validation and UBL tests;
* :mod:`.reply_fixtures`: InExchange's documented replies (``tests/contract/*.json``);
* :mod:`.hostile`, :mod:`.hostile_corpus`: hostile ERP input and the corpus the pipeline meets;
* :mod:`.raw_server`: a raw-socket HTTP server for replies no framework would send;
* :mod:`.deployment`: clean virtual environments and fresh Airflow homes of the deployment tests.
"""

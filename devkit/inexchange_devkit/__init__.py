"""The development kit of the InExchange provider: what the demo, the tests and the benchmarks run
beside Airflow, and what a production worker never needs.

- :mod:`inexchange_devkit.simulator`: a local InExchange API (``python -m inexchange_devkit.simulator``);
- :mod:`inexchange_devkit.erpgen`: a demo ERP with the adapter contract's tables
  (``python -m inexchange_devkit.erpgen``);
- :mod:`inexchange_devkit.services`: real Airflow components as local processes (the tests, the
  benchmarks and ``make celery-up``).

It is installed by ``make`` and CI (``pip install -e devkit``) and is not part of the provider
distribution ``airflow-provider-inexchange``.
"""

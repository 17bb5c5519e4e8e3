"""Loopline's dev tooling: the local production-topology supervisor (``loopline_dev.stack``, behind ``make stack``
and ``make up``), the demo driver (``loopline_dev.demo``, behind ``make demo``) and the REST client used by tests
and benchmarks (``loopline_dev.rest``).

It is never imported by the core (``loopline``), the DAGs or the plugin (``loopline_airflow``) — a unit test walks
their imports — and it is not part of the provider wheel: it runs from a checkout (``make install``).
"""

"""Loopline's Airflow layer: the MLflow hook, registry and validation operators, the drift sensor and triggers.

Laid out like an Airflow provider; import the classes from their modules
(``loopline_airflow.operators.registry`` …). This package import stays light: nothing heavy is imported
until a task runs.
"""

"""Loopline Airflow layer."""

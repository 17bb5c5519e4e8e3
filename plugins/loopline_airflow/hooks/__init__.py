"""hooks of the Loopline Airflow layer."""

"""operators of the Loopline Airflow layer."""

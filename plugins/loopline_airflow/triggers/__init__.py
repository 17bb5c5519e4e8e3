"""triggers of the Loopline Airflow layer."""

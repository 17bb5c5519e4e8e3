"""sensors of the Loopline Airflow layer."""

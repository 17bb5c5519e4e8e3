-- MLflow's backend store and its basic-auth users live beside Airflow's metadata DB.
CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE mlflow_auth OWNER airflow;

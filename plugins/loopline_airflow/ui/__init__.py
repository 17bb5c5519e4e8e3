"""The Loopline page in the Airflow UI: a FastAPI app under ``/loopline``, behind Airflow's own auth.

Imported only by the api-server, when it mounts the plugin's ``fastapi_apps`` (see ``loopline_airflow.plugin``).
"""

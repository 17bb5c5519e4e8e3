# Loopline on the official Airflow image: the locked dependencies, then the project itself.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
USER airflow

WORKDIR /opt/loopline
COPY --chown=airflow:root pyproject.toml uv.lock README.md ./
# Export the lock (without the dev group) and install exactly those versions into the image's Python.
RUN pip install --no-cache-dir "uv==0.13.9" \
 && uv export --frozen --no-dev --no-emit-project --format requirements-txt -o /tmp/requirements.txt \
 && uv pip install --system --no-cache --compile-bytecode -r /tmp/requirements.txt

COPY --chown=airflow:root include ./include
COPY --chown=airflow:root plugins ./plugins
COPY --chown=airflow:root dags ./dags
RUN uv pip install --system --no-cache --compile-bytecode --no-deps .

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/loopline/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/loopline/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false \
    LOOPLINE_HOME=/opt/loopline/state

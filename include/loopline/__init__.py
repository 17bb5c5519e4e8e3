"""Loopline core.

Importing the package sets ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` in this process unless the
environment already sets it: then no MLflow loader (``mlflow.sklearn``, ``mlflow.pyfunc``, ...) deserializes a
model artifact here, in the ``loopline`` CLI, a notebook or a test. Loopline's own loader,
:func:`loopline.tracking.load_model`, does not depend on it: it reads only skops files of reviewed types. The
processes Loopline starts (``loopline_dev.stack``, the demo) and the images (``Dockerfile``,
``docker-compose.yaml``) set it explicitly.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

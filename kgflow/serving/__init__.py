"""Serving a finished run over HTTP: ``kgflow serve RUN_DIR``.

:mod:`kgflow.serving.service` answers requests with plain Python values and knows nothing of HTTP
(so it is tested without a server); :mod:`kgflow.serving.app` puts it behind FastAPI, which is an
optional dependency (``pip install "kgflow[serve]"``); :mod:`kgflow.serving.server` starts uvicorn.
"""

"""Start uvicorn on a finished run: what ``kgflow serve`` does."""
from __future__ import annotations

import os

from kgflow.errors import KgflowError


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          max_k: int = 1000, threads: int = 1, log_level: str = "info") -> None:
    """Serve ``run_dir`` until interrupted. The run is loaded (and checked) here first, so a bad
    run directory fails before any port is opened; with ``workers`` > 1 each worker process loads
    it again (uvicorn's app factory)."""
    try:
        import uvicorn
    except ImportError:
        raise KgflowError('kgflow serve needs the serve extra: pip install "kgflow[serve]" '
                          "(FastAPI and uvicorn)") from None
    from kgflow.serving.app import MAX_K_ENV, RUN_DIR_ENV, THREADS_ENV, app_from_environment

    os.environ[RUN_DIR_ENV] = str(run_dir)
    os.environ[MAX_K_ENV] = str(max_k)
    os.environ[THREADS_ENV] = str(threads)
    if workers == 1:
        uvicorn.run(app_from_environment(), host=host, port=port, log_level=log_level)
    else:
        from pathlib import Path

        from kgflow.inference import check_finished

        # fail early, in this process, on a bad run directory; the workers load the model (this
        # process holding one too would cost a model's memory for nothing)
        check_finished(Path(run_dir))
        uvicorn.run("kgflow.serving.app:app_from_environment", factory=True, host=host, port=port,
                    workers=workers, log_level=log_level)

"""The HTTP face of :class:`~kgflow.serving.service.RecommendService`: FastAPI routes, request
schemas (which FastAPI turns into the OpenAPI document at ``/openapi.json``) and error handlers.

Every error is JSON of one shape, whatever raised it::

    {"error": "k: k must be between 1 and 1000",
     "problems": [{"field": "k", "message": "k must be between 1 and 1000", "got": 0}]}

``field`` is the request field at fault (``body`` for a body that is not JSON, ``users[3]`` for the
fourth user of a batch). Validation problems answer 422, unknown users and items 404, a body that
is not JSON 400; an unexpected failure answers 500 and the server keeps serving.
"""
from __future__ import annotations

import logging
import os
from typing import Annotated, Literal, Optional

from kgflow.errors import KgflowError

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise KgflowError('kgflow serve needs the serve extra: pip install "kgflow[serve]" '
                      f"(FastAPI and uvicorn); {exc}") from None

from kgflow.serving.service import MAX_BATCH_USERS, Filters, RecommendService, RequestError

log = logging.getLogger("kgflow.serve")

def _int_as_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: Ids may arrive as JSON strings or integers (MovieLens ids look numeric); they are matched as text.
Id = Annotated[StrictStr, BeforeValidator(_int_as_text)]
Exclude = Literal["seen", "train", "none"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    k: int = Field(10, ge=1, description="items to return (at most the server's max_k)")
    items: Optional[list[Id]] = Field(None, max_length=1_000_000,
                                      description="rank only these items (a candidate set)")
    exclude_items: list[Id] = Field(default_factory=list, description="never return these items")

    def filters(self) -> Filters:
        return Filters(self.k, self.items, self.exclude_items)


class UserRequest(_Request):
    user: Id = Field(description="a user id the run was trained on")
    exclude: Exclude = Field("seen", description="skip the user's known items: seen (train, valid "
                             "and test), train, or none")


class BatchRequest(_Request):
    users: list[Id] = Field(min_length=1, max_length=MAX_BATCH_USERS)
    exclude: Exclude = "seen"


class SimilarRequest(_Request):
    item: Id = Field(description="an item id the run knows")


class NewUserRequest(_Request):
    liked: list[Id] = Field(default_factory=list, max_length=10_000,
                            description="items the new user liked (folded into the model)")
    profile: Optional[str] = Field(None, max_length=100_000,
                                   description="the user in words (models with a text encoder)")


class ExplainRequest(_Request):
    user: Optional[Id] = Field(None, description="a user the run knows; or give liked/profile")
    liked: list[Id] = Field(default_factory=list, max_length=10_000)
    profile: Optional[str] = Field(None, max_length=100_000)
    exclude: Exclude = "seen"
    paths: int = Field(3, ge=1, le=20, description="KG paths per recommended item")


class Item(BaseModel):
    rank: int
    item: str
    score: float
    title: Optional[str] = None
    paths: Optional[list[dict]] = None


class Ranked(BaseModel):
    user: Optional[str] = None
    item: Optional[str] = None
    items: list[Item]


def _field(location: tuple) -> str:
    """``("body", "users", 3)`` -> ``users[3]``: the field as the client wrote it."""
    parts = [p for p in location if p not in ("body", "query", "path")] or ["body"]
    text = str(parts[0])
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _error(status: int, problems: list[dict]) -> JSONResponse:
    first = problems[0]
    return JSONResponse(status_code=status, content={
        "error": f"{first['field']}: {first['message']}", "problems": problems})


def create_app(service: RecommendService) -> FastAPI:
    """The FastAPI application answering from ``service``."""
    info = service.info()
    app = FastAPI(title=f"kgflow: {info['name']}", version=info["kgflow"],
                  description=f"Recommendations from the kgflow run {info['run']} "
                  f"({info['users']:,} users, {info['items']:,} items).")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems, status = [], 422
        for error in exc.errors():
            if error.get("type") == "json_invalid":
                status = 400
                problems.append({"field": "body", "message": f"not valid JSON: {error.get('msg')}"})
                continue
            problem = {"field": _field(tuple(error.get("loc", ()))), "message": error.get("msg", "")}
            if "input" in error and error.get("type") != "missing":
                got = error["input"]
                problem["got"] = got if isinstance(got, (str, int, float, bool, type(None))) else str(got)[:200]
            problems.append(problem)
        return _error(status, problems or [{"field": "body", "message": "invalid request"}])

    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        problem = {"field": exc.field, "message": exc.message}
        if exc.got is not None:
            problem["got"] = exc.got
        return _error(exc.status, [problem])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # what FastAPI itself refuses: an unreadable body (400), an unknown path (404), a wrong
        # method (405); answered in the same shape as every other error
        field = "body" if exc.status_code == 400 else "path"
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no endpoint {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        response = _error(exc.status_code, [{"field": field, "message": message}])
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("request %s %s failed", request.method, request.url.path)
        return _error(500, [{"field": "server", "message": f"{type(exc).__name__}: {exc}"}])

    @app.get("/health", summary="Liveness: the run is loaded and answering")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info", summary="The run: model, data, test metrics, limits")
    def run_info() -> dict:
        return info

    @app.post("/recommend", response_model=Ranked, response_model_exclude_none=True,
              summary="Top-k for a user the run was trained on")
    def recommend(body: UserRequest) -> dict:
        return service.recommend(body.user, body.filters(), body.exclude)

    @app.post("/recommend/batch", response_model=list[Ranked], response_model_exclude_none=True,
              summary="Top-k for many known users at once")
    def recommend_batch(body: BatchRequest) -> list[dict]:
        return service.recommend_batch(body.users, body.filters(), body.exclude)

    @app.post("/recommend/new", response_model=Ranked, response_model_exclude_none=True,
              summary="Top-k for a new user from liked items and/or a profile text")
    def recommend_new(body: NewUserRequest) -> dict:
        return service.recommend_new(body.liked, body.profile, body.filters())

    @app.post("/similar", response_model=Ranked, response_model_exclude_none=True,
              summary="Items nearest to an item (cosine of the final item representations)")
    def similar(body: SimilarRequest) -> dict:
        return service.similar(body.item, body.filters())

    @app.post("/explain", response_model=Ranked, response_model_exclude_none=True,
              summary="Recommendations with the KG paths that support them")
    def explain(body: ExplainRequest) -> dict:
        return service.explain(body.user,
                               body.liked, body.profile, body.filters(),
                               body.exclude, body.paths)

    return app


#: environment variables through which ``kgflow serve`` hands its options to uvicorn's workers
RUN_DIR_ENV, MAX_K_ENV, THREADS_ENV = "KGFLOW_SERVE_RUN", "KGFLOW_SERVE_MAX_K", "KGFLOW_SERVE_THREADS"


def app_from_environment() -> FastAPI:
    """uvicorn's app factory for ``--workers N``: each worker process loads the run itself."""
    import torch

    from kgflow.inference import TrainedRun

    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    run = TrainedRun.load(os.environ[RUN_DIR_ENV])
    return create_app(RecommendService(run, max_k=int(os.environ.get(MAX_K_ENV, "1000"))))

"""kgflow serve: a finished run answered over real HTTP on the loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from kgflow.inference import TrainedRun  # noqa: E402
from kgflow.testing import run_fast  # noqa: E402


def call(base: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, object]:
    """One HTTP request; returns (status, decoded JSON)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def kg_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "kgat"
    run_fast({"graph": "collaborative_kg", "encoders": {"graph": {"name": "kgat", "params": {"dim": 8}}},
              "train": {"epochs": 2}}, out)
    return out


@pytest.fixture(scope="module")
def server(kg_run):
    """uvicorn in a daemon thread on a free loopback port; stopped after the module's tests."""
    from kgflow.serving.app import create_app
    from kgflow.serving.service import RecommendService

    run = TrainedRun.load(kg_run)
    app = create_app(RecommendService(run, max_k=50))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not (srv.started and srv.servers) and time.time() < deadline:
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", run
    srv.should_exit = True
    thread.join(10)


def test_health_info_and_openapi(server):
    base, run = server
    assert call(base, "/health") == (200, {"status": "ok"})
    status, info = call(base, "/info")
    assert status == 200 and info["users"] == run.split.n_users and info["items"] == run.split.n_items
    assert info["encoders"] == {"graph": "kgat"} and info["explanations"] is True
    assert info["test_metrics"]["ndcg@10"] == pytest.approx(run.metrics["test"]["all"]["ndcg@10"])
    status, schema = call(base, "/openapi.json")
    assert status == 200
    assert {"/recommend", "/recommend/batch", "/recommend/new", "/similar", "/explain"} <= set(schema["paths"])


def test_top_k_for_a_known_user_matches_the_run_and_honours_filters(server):
    base, run = server
    user = str(run.split.user_ids[0])
    status, body = call(base, "/recommend", {"user": user, "k": 5})
    assert status == 200 and body["user"] == user
    expected = run.recommend([user], k=5)
    assert [r["item"] for r in body["items"]] == [str(i) for i in expected["item"]]
    assert [r["rank"] for r in body["items"]] == [1, 2, 3, 4, 5]
    first, second = body["items"][0]["item"], body["items"][1]["item"]
    _, without = call(base, "/recommend", {"user": user, "k": 5, "exclude_items": [first]})
    assert first not in [r["item"] for r in without["items"]]
    assert without["items"][0]["item"] == second
    candidates = [str(i) for i in run.split.item_ids[:6]]
    _, only = call(base, "/recommend", {"user": user, "k": 50, "items": candidates, "exclude": "none"})
    assert {r["item"] for r in only["items"]} == set(candidates)
    # training items are skipped unless asked not to
    train_items = {str(run.split.item_ids[i]) for u, i in zip(run.split.train.user, run.split.train.item) if u == 0}
    _, seen = call(base, "/recommend", {"user": user, "k": 50, "exclude": "train"})
    assert not train_items & {r["item"] for r in seen["items"]}


def test_batch_similar_and_new_users(server):
    base, run = server
    users = [str(u) for u in run.split.user_ids[:3]]
    status, batch = call(base, "/recommend/batch", {"users": users, "k": 4})
    assert status == 200 and [b["user"] for b in batch] == users
    for record in batch:
        _, single = call(base, "/recommend", {"user": record["user"], "k": 4})
        assert [r["item"] for r in single["items"]] == [r["item"] for r in record["items"]]
        assert [r["score"] for r in single["items"]] == pytest.approx([r["score"] for r in record["items"]],
                                                                      rel=1e-5)
    item = str(run.split.item_ids[0])
    status, similar = call(base, "/similar", {"item": item, "k": 5})
    assert status == 200 and len(similar["items"]) == 5 and item not in [r["item"] for r in similar["items"]]
    scores = [r["score"] for r in similar["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    liked = [str(i) for i in run.split.item_ids[:2]]
    status, new = call(base, "/recommend/new", {"liked": liked, "k": 5})
    assert status == 200 and not set(liked) & {r["item"] for r in new["items"]}
    expected = run.recommend_new(liked, k=5)
    assert [r["item"] for r in new["items"]] == [str(i) for i in expected["item"]]
    status, error = call(base, "/recommend/new", {"profile": "likes noir", "k": 5})
    assert status == 422 and error["problems"][0]["field"] == "profile"


def test_explanations_come_with_kg_paths(server):
    base, run = server
    user = str(run.split.user_ids[0])
    status, body = call(base, "/explain", {"user": user, "k": 5, "paths": 2})
    assert status == 200 and len(body["items"]) == 5
    assert all(len(r["paths"]) <= 2 for r in body["items"])
    history = {str(run.split.item_ids[i]) for u, i in zip(run.split.train.user, run.split.train.item) if u == 0}
    for record in body["items"]:
        for path in record["paths"]:
            assert path["history_item"] in history and "you liked" in path["sentence"]
    status, error = call(base, "/explain", {"k": 5})
    assert status == 422 and error["problems"][0]["field"] == "user"


@pytest.mark.parametrize("path, body, status, field", [
    ("/recommend", {"user": "no-such-user"}, 404, "user"),
    ("/recommend", {"user": "1", "k": 0}, 422, "k"),
    ("/recommend", {"user": "1", "k": 10**9}, 422, "k"),
    ("/recommend", {"user": "1", "k": "ten"}, 422, "k"),
    ("/recommend", {"user": ["1"]}, 422, "user"),
    ("/recommend", {}, 422, "user"),
    ("/recommend", {"user": "1", "kk": 3}, 422, "kk"),
    ("/recommend", {"user": "1", "exclude": "everything"}, 422, "exclude"),
    ("/recommend", {"user": "1", "exclude_items": ["nope"]}, 404, "exclude_items[0]"),
    ("/recommend/batch", {"users": []}, 422, "users"),
    ("/recommend/batch", {"users": ["1", "ghost"]}, 404, "users[1]"),
    ("/recommend/new", {"liked": []}, 422, "liked"),
    ("/recommend/new", {"liked": ["1", {"a": 1}]}, 422, "liked[1]"),
    ("/similar", {"item": "ghost"}, 404, "item"),
    ("/explain", {"user": "1", "paths": 0}, 422, "paths"),
])
def test_bad_requests_get_json_errors_naming_the_field(server, path, body, status, field):
    base, run = server
    if body.get("user") == "1":
        body = body | {"user": str(run.split.user_ids[0])}
    if body.get("users") == ["1", "ghost"]:
        body = {"users": [str(run.split.user_ids[0]), "ghost"]}
    if body.get("liked") and body["liked"][0] == "1":
        body = {"liked": [str(run.split.item_ids[0]), {"a": 1}]}
    got_status, error = call(base, path, body)
    assert got_status == status, error
    assert error["problems"][0]["field"] == field, error
    assert error["error"].startswith(field)
    assert call(base, "/health")[0] == 200  # still answering


def test_malformed_json_is_a_400_and_the_server_survives(server):
    base, _ = server
    status, error = call(base, "/recommend", raw=b'{"user": ')
    assert status == 400 and error["problems"][0]["field"] == "body"
    status, error = call(base, "/recommend", raw=b"\xff\xfe not json")
    assert status == 400 and error["problems"][0]["field"] == "body"
    status, error = call(base, "/no-such-endpoint", {"user": "1"})
    assert status == 404 and "/docs" in error["error"]
    assert call(base, "/health")[0] == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_cli_serves_a_run_and_refuses_a_bad_directory(kg_run, tmp_path):
    bad = subprocess.run([sys.executable, "-m", "kgflow", "serve", str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "not a kgflow run directory" in bad.stderr
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "kgflow", "serve", str(kg_run), "--port", str(port),
                                "--workers", "2", "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if call(base, "/health")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        status, info = call(base, "/info")
        assert status == 200 and info["run"] == str(kg_run)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()

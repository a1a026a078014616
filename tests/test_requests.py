"""Hostile requests to the service, on a tiny stand-in model (no pipeline run needed): lenient values, cross-site writes,
bodies and headers that never finish, and /docs offline. In process (Starlette's test client) where HTTP framing does not
matter; a real uvicorn on 127.0.0.1 (and headless Chromium) where it does."""
import json, shutil, socket, sqlite3, threading, time
from pathlib import Path
import pytest


def toy_model():
    "A stand-in ServedModel: image (N,1,2,2) uint8 -> logits (N,3), labels a, b, c (as in nbs/20_serve.ipynb)."
    from onnx import helper, TensorProto
    from mlops_nb.bundle import ort_session
    from mlops_nb.served import ServedModel, with_head
    g = helper.make_graph([helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                           helper.make_node("Flatten", ["f"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])], "t",
                          [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 1, 2, 2])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
                          [helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [0.01, 0, -0.01] * 4)])
    onx = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); onx.ir_version = 8
    head = with_head(onx.SerializeToString())
    return ServedModel("toy", 3, "sha256:00", ["a", "b", "c"], (1, 2, 2), {"inputs": []}, "run-1", ort_session(head), head)


@pytest.fixture(scope="module")
def toy():
    return toy_model()


@pytest.fixture
def client(toy, tmp_path):
    "(test client, prediction log path) for an app on the toy model with its own log."
    from fastapi.testclient import TestClient
    from mlops_nb.predlog import PredictionLog
    from mlops_nb.serve import create_app
    log = PredictionLog(tmp_path / "predictions.db", flush_ms=5)
    with TestClient(create_app(toy, dict(max_batch=8, max_body=4096), log)) as c:
        yield c, tmp_path / "predictions.db"


def rows_in(db: Path, table: str) -> int:
    with sqlite3.connect(db) as c: return c.execute(f"select count(*) from {table}").fetchone()[0]


def oip(data, **extra):
    return {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 1, 2, 2], "data": data}], **extra}


# --- item 11: only JSON numbers are pixels; an OIP id is a string ------------------------------------------------------

LENIENT = [(["255", 1, 2, 3], "not text '255'"), ([" 7 ", 1, 2, 3], "not text ' 7 '"), ([True, 1, 2, 3], "not true"),
           ([False, 0, 0, 0], "not false"), ([1.0, True, 2, 3], "not true"), ([[0, 1], ["2", 3]], "not text '2'")]


@pytest.mark.parametrize("row, msg", LENIENT)
def test_text_and_booleans_are_not_pixels(client, row, msg):
    c, _ = client
    flat = [v for r in row for v in r] if isinstance(row[0], list) else row
    for route, body in [("/v1/predict", {"inputs": [row if not isinstance(row[0], list) else [row]]}),
                        ("/v2/models/toy/infer", oip(flat)), ("/v2/models/toy/infer", oip([[row]] if isinstance(row[0], list) else [[[row[:2], row[2:]]]]))]:
        r = c.post(route, json=body)
        assert r.status_code == 400 and msg in r.json()["error"], (route, body, r.status_code, r.text)


def test_numbers_still_pass(client):
    c, _ = client
    assert c.post("/v1/predict", json={"inputs": [[0, 1, 2, 255]]}).status_code == 200
    assert c.post("/v1/predict", json={"inputs": [[0.0, 1.0, 2, 255e0]]}).status_code == 200
    assert c.post("/v2/models/toy/infer", json=oip([0, 1, 2, 255])).status_code == 200
    assert c.post("/v2/models/toy/infer", json=oip([[[[0.0, 1], [2, 3]]]])).status_code == 200


@pytest.mark.parametrize("rid, what", [({"a": 1}, "an object"), ([1], "an array"), (7, "a number"), (True, "a boolean")])
def test_an_oip_id_must_be_a_string(client, rid, what):
    c, _ = client
    r = c.post("/v2/models/toy/infer", json=oip([0, 1, 2, 3], id=rid))
    assert r.status_code == 400 and r.json()["error"] == f"id: give a string, not {what}", r.text
    assert "{'a'" not in r.text and r.json().get("id") is None
    assert c.post("/v2/models/toy/infer", json=oip([0, 1, 2, 3], id="cam-1")).json()["id"] == "cam-1"

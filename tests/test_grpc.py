"""The Open Inference Protocol over gRPC and the REST extensions, against a real `mlops-nb serve`: tritonclient.grpc at its
defaults (raw tensors both ways) gets the bundle's offline predictions; refusals are the REST ones with gRPC status codes,
counted and logged; /v2/models, statistics, configuration and the repository index answer as Triton's clients read them."""
import collections, time
import numpy as np
import pytest
from test_serve import free_port, http, offline, start, stop


@pytest.fixture(scope="module")
def both(smoke):
    "`mlops-nb serve` of the smoke model with gRPC on its own port: (base url, gRPC address, process, settings)."
    settings, _, _ = smoke
    g = free_port()
    url, p = start(settings, "--grpc-port", str(g))
    yield url, f"127.0.0.1:{g}", p, settings
    err = stop(p)
    assert f"gRPC (Open Inference Protocol) on 127.0.0.1:{g}" in err


def test_tritonclient_grpc_at_its_defaults(both):
    import tritonclient.grpc as tg
    url, addr, p, settings = both
    v, b, x, want = offline(settings)
    c = tg.InferenceServerClient(addr)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("digits-cnn")
    assert c.is_model_ready("digits-cnn", str(v["version"]))
    meta = c.get_model_metadata("digits-cnn", as_json=True)
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": ["-1", "1", "8", "8"]}]
    assert "binary_tensor_data" in c.get_server_metadata(as_json=True)["extensions"]
    inp = tg.InferInput("image", list(x.shape), "UINT8"); inp.set_data_from_numpy(x)
    r = c.infer("digits-cnn", [inp], request_id="grpc-1", headers={"x-tags": "camera=7"})
    assert np.allclose(r.as_numpy("probabilities"), want, atol=1e-5)
    assert [l.decode() for l in r.as_numpy("label")] == [b.labels[i] for i in want.argmax(1)]
    assert r.get_response(as_json=True)["id"] == "grpc-1"
    from mlops_nb.core.config import load_settings
    from mlops_nb.core.predlog import predictions
    time.sleep(0.5)
    rows = [r for r in predictions(load_settings(settings).predictions) if r["request_id"] == "grpc-1"]
    assert len(rows) == len(x) and rows[0]["tags"] == {"camera": "7"} and rows[0]["route"] == "/inference.GRPCInferenceService/ModelInfer"


def test_grpc_refuses_as_rest_does(both):
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException
    url, addr, p, settings = both
    c = tg.InferenceServerClient(addr)
    bad = tg.InferInput("image", [1, 1, 4, 16], "UINT8"); bad.set_data_from_numpy(np.zeros((1, 1, 4, 16), np.uint8))
    with pytest.raises(InferenceServerException) as e: c.infer("digits-cnn", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "the model takes [N, 1, 8, 8]" in e.value.message()
    with pytest.raises(InferenceServerException) as e: c.infer("no-such-model", [bad])
    assert e.value.status() == "StatusCode.NOT_FOUND" and "unknown model 'no-such-model'" in e.value.message()
    f = tg.InferInput("image", [1, 1, 8, 8], "FP32"); f.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(InferenceServerException, match="datatype 'FP32'; the model takes UINT8"): c.infer("digits-cnn", [f])
    import urllib.request
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    assert 'route="/inference.GRPCInferenceService/ModelInfer",status="400"' in text.replace(" ", "")


def test_the_rest_extensions(both):
    import tritonclient.http as th
    url, addr, p, settings = both
    v, b, x, want = offline(settings)
    st, _, models = http("GET", url + "/v2/models")
    assert st == 200 and models == {"models": [{"name": "digits-cnn", "versions": [str(v["version"])]}]}
    c = th.InferenceServerClient(url.removeprefix("http://"))
    inp = th.InferInput("image", list(x.shape), "UINT8"); inp.set_data_from_numpy(x)
    c.infer("digits-cnn", [inp])
    stats = c.get_inference_statistics("digits-cnn")["model_stats"]
    (s,) = stats
    assert s["version"] == str(v["version"]) and s["inference_count"] >= len(x) and s["execution_count"] >= 1
    assert s["inference_stats"]["compute_infer"]["ns"] > 0 and s["inference_stats"]["queue"]["count"] >= 1
    cfg = c.get_model_config("digits-cnn")
    assert cfg["input"] == [{"name": "image", "data_type": "TYPE_UINT8", "dims": [1, 8, 8]}] and cfg["max_batch_size"] > 0
    index = c.get_model_repository_index()
    mine = {r["version"]: r for r in index}
    assert mine[str(v["version"])]["state"] == "READY" and "staging" in mine[str(v["version"])]["aliases"]
    st, _, e = http("GET", url + "/v2/models/nope/stats")
    assert st == 404 and "unknown model 'nope'" in e["error"]


def test_the_committed_stubs_are_what_make_proto_generates(tmp_path):
    "mlops_nb/proto/*_pb2*.py are generated (`make proto`), never edited: regenerating them gives the same files."
    import re, shutil, subprocess, sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "mlops_nb" / "proto").mkdir(parents=True)
    shutil.copy(repo / "mlops_nb/proto/open_inference_grpc.proto", tmp_path / "mlops_nb/proto")
    make = (repo / "Makefile").read_text()
    sed = re.search(r"^\tsed -i '(.+)' \$\(PROTO\)_pb2\.py$", make, re.M)[1]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--grpc_python_out=.",
                    "mlops_nb/proto/open_inference_grpc.proto"], cwd=tmp_path, check=True)
    subprocess.run(["sed", "-i", sed, "mlops_nb/proto/open_inference_grpc_pb2.py"], cwd=tmp_path, check=True)
    for f in ("open_inference_grpc_pb2.py", "open_inference_grpc_pb2_grpc.py"):
        assert (tmp_path / "mlops_nb/proto" / f).read_text() == (repo / "mlops_nb/proto" / f).read_text(), f


def test_generated_grpc_requests_get_documented_codes(both):
    "ModelInferRequests generated by hypothesis (any names, datatypes, shapes, raw or typed contents, ids, parameters, "
    "metadata) get OK or a status that stands for a documented refusal, never UNKNOWN or INTERNAL; the service lives on."
    import grpc
    from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
    from mlops_nb.proto import open_inference_grpc_pb2 as pb, open_inference_grpc_pb2_grpc as pbg
    url, addr, p, _ = both
    ok = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
    seen = collections.Counter()
    dims = st.lists(st.integers(-2, 70), min_size=0, max_size=5)
    tensor = st.fixed_dictionaries({"name": st.sampled_from(["image", "x", ""]), "datatype": st.sampled_from(["UINT8", "FP32", "BYTES", "", "uint8"]),
                                    "shape": st.one_of(dims, st.just([1, 1, 8, 8]), st.just([2, 1, 8, 8]))})
    with grpc.insecure_channel(addr) as ch:
        stub = pbg.GRPCInferenceServiceStub(ch)

        @hsettings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(ts=st.lists(tensor, min_size=0, max_size=2), raw=st.lists(st.binary(max_size=200), max_size=3),
               typed=st.lists(st.integers(-5, 300), max_size=130), name=st.sampled_from(["digits-cnn", "other", ""]),
               version=st.sampled_from(["", "1", "99", "x"]), rid=st.text(max_size=140),
               params=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
               tags=st.sampled_from([None, "camera=3", "bad tag", "a=b,,c"]))   # gRPC metadata is ASCII: the client refuses more
        def one(ts, raw, typed, name, version, rid, params, tags):
            r = pb.ModelInferRequest(model_name=name, model_version=version, id=rid)
            for t in ts:
                x = r.inputs.add(name=t["name"], datatype=t["datatype"], shape=[d for d in t["shape"]])
                if not raw: x.contents.uint_contents.extend(v for v in typed if v >= 0)
            r.raw_input_contents.extend(raw)
            for k, v in params.items(): r.parameters[k].string_param = v
            try:
                stub.ModelInfer(r, timeout=10, metadata=() if tags is None else (("x-tags", tags),)); code = grpc.StatusCode.OK
            except grpc.RpcError as e: code = e.code()
            seen[code] += 1
            assert code in ok, (code, r)
        one()
    assert seen[grpc.StatusCode.INVALID_ARGUMENT] > 10 and seen[grpc.StatusCode.NOT_FOUND] > 0, seen
    assert http("GET", url + "/healthz")[0] == 200


KSERVE = "kserve==0.21.0"


def kserve_python():
    "A Python with KServe's client, in a virtual environment of its own under ~/.cache (made once: about 3 minutes)."
    import os, subprocess, sys
    from pathlib import Path
    venv = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlops_nb" / "venvs" / KSERVE.replace("==", "-")
    py = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", KSERVE], check=True, timeout=900)
        (venv / ".installed").touch()
    return py


@pytest.mark.slow          # the client's own environment takes minutes to install on a fresh machine: `make test-slow`
def test_kserve_clients_at_their_defaults(both):
    import json, subprocess
    from pathlib import Path
    url, addr, p, settings = both
    v, b, x, want = offline(settings)
    py = kserve_python()
    script = Path(__file__).parent / "clients" / "kserve_client.py"
    r = subprocess.run([str(py), str(script), url, addr, "digits-cnn", json.dumps(x.tolist())], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["grpc_live"] and got["grpc_ready"] and got["grpc_model_ready"] and got["rest_ready"]
    labels = [b.labels[i] for i in want.argmax(1)]
    for proto in ("grpc", "rest"):
        assert got[proto]["id"] == f"kserve-{proto}"
        assert np.allclose(np.array(got[proto]["probabilities"]), want, atol=1e-5), proto
        assert got[proto]["label"] == labels, proto

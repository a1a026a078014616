"""BentoML around ONNX Runtime: a service whose API is `batchable` (adaptive batching, `max_batch_size` and
`max_latency_ms` as BentoML's docs set them), one worker, its own JSON: POST /predict {"x": [[...]]}."""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from common import args

SERVICE = '''
import os, json
import numpy as np
import bentoml
from common import session

A = json.loads(os.environ["PEER_ARGS"])


@bentoml.service(workers=1, traffic={"timeout": 60})
class OnnxModel:
    def __init__(self):
        self.sess = session(A["model"], A["threads"])

    @bentoml.api(batchable=True, max_batch_size=A["max_batch"], max_latency_ms=max(1000, int(A["delay_ms"] * 100)))
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {"image": x.astype(np.uint8, copy=False).reshape(len(x), *A["shape"])})[0]
'''

if __name__ == "__main__":
    import json
    a = args()
    d = Path(a.folder) / "bentoml"; d.mkdir(parents=True, exist_ok=True)
    (d / "service.py").write_text(SERVICE)
    (d / "common.py").write_text((Path(__file__).parent / "common.py").read_text())
    os.environ["PEER_ARGS"] = json.dumps(vars(a))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.chdir(d)
    os.execv(str(Path(sys.executable).parent / "bentoml"),
             ["bentoml", "serve", "service:OnnxModel", "--host", "127.0.0.1", "--port", str(a.port)])

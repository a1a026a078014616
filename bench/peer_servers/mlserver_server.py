"""MLServer around ONNX Runtime: a custom `MLModel` (MLServer has no ONNX runtime of its own), adaptive batching on
(`max_batch_size`, `max_batch_time`, as MLServer's docs set it), REST and gRPC of the Open Inference Protocol.
`parallel_workers = 0`: MLServer's default (one inference process) dies at start with the uvloop its pins allow
("There is no current event loop in thread 'MainThread'"), and on 2 cores an inference process only adds a hop."""
import json, os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from common import args

MODEL = '''
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from common import session


class OnnxModel(MLModel):
    async def load(self) -> bool:
        p = self.settings.parameters
        self.sess = session(p.uri, int(p.extra["threads"]))
        return True

    async def predict(self, req: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(req.inputs[0]).astype(np.uint8, copy=False)
        y = self.sess.run(None, {"image": x})[0]
        return InferenceResponse(model_name=self.name, id=req.id, outputs=[NumpyCodec.encode_output("logits", y)])
'''

if __name__ == "__main__":
    a = args()
    d = Path(a.folder) / "mlserver"; (d / "m").mkdir(parents=True, exist_ok=True)
    (d / "m" / "onnx_model.py").write_text(MODEL)
    (d / "m" / "common.py").write_text((Path(__file__).parent / "common.py").read_text())
    (d / "settings.json").write_text(json.dumps({"host": "127.0.0.1", "http_port": a.port, "grpc_port": a.grpc_port,
                                                 "metrics_port": a.port + 2, "metrics_endpoint": None, "debug": False,
                                                 "parallel_workers": 0}))   # inference in the server process: see below
    (d / "m" / "model-settings.json").write_text(json.dumps({
        "name": a.name, "implementation": "onnx_model.OnnxModel", "max_batch_size": a.max_batch,
        "max_batch_time": a.delay_ms / 1000, "parameters": {"uri": str(a.model), "extra": {"threads": a.threads}}}))
    os.execv(str(Path(sys.executable).parent / "mlserver"), ["mlserver", "start", str(d)])

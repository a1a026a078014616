"""KServe's Python `ModelServer` around ONNX Runtime: a custom `Model` (v2 REST and gRPC of the Open Inference Protocol).
KServe batches in its agent sidecar on Kubernetes, not in the model server, so there is no batching here."""
import logging, sys, uuid
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from common import args, session


def main():
    import numpy as np
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    class OnnxModel(Model):
        def __init__(self, name, path, threads):
            super().__init__(name)
            self.sess = session(path, threads); self.ready = True

        def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
            x = payload.inputs[0].as_numpy().astype(np.uint8, copy=False)
            y = self.sess.run(None, {"image": x})[0]
            binary = any(o.binary_data for o in payload.request_outputs or []) or bool(payload.use_binary_outputs)
            out = InferOutput("logits", list(y.shape), "FP32"); out.set_data_from_numpy(y, binary_data=binary)
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, [out])

    a = args()
    logging.disable(logging.INFO)          # KServe logs a line per gRPC call at INFO: not what a server under load would do
    ModelServer(http_port=a.port, grpc_port=a.grpc_port, workers=1, enable_docs_url=False, enable_latency_logging=False).start(
        [OnnxModel(a.name, a.model, a.threads)])


if __name__ == "__main__":
    main()

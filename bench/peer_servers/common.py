"""What every peer's server script shares: its arguments and the ONNX Runtime session, configured as mlops-nb's own.

Each script runs in the peer's own virtual environment (made by bench/peers.py), never in mlops_nb's."""
import argparse, json


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="the ONNX model: uint8 `image` (N, C, H, W) -> float `logits`")
    ap.add_argument("--name", default="m", help="the model's name in the peer's routes")
    ap.add_argument("--port", type=int, required=True, help="HTTP port on 127.0.0.1")
    ap.add_argument("--grpc-port", type=int, default=0, help="gRPC port, for the peers that serve the protocol's gRPC")
    ap.add_argument("--max-batch", type=int, default=16, help="adaptive batching: most rows a batch")
    ap.add_argument("--delay-ms", type=float, default=2.0, help="adaptive batching: longest wait for a batch to fill")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (mlops-nb serve's default: 1)")
    ap.add_argument("--shape", type=json.loads, required=True, help="the input's (C, H, W) as JSON")
    ap.add_argument("--folder", help="a scratch folder, for the peers that want files")
    return ap.parse_args()


def session(path, threads: int):
    "An ONNX Runtime CPU session set as mlops-nb serve sets its own (intra-op threads, one inter-op thread)."
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

"""KServe's own clients at their defaults against `mlops-nb serve`, run in a virtual environment of their own (kserve pins
psutil<6, the project psutil 7): InferenceGRPCClient (raw tensors) and InferenceRESTClient (protocol v2, binary data).
Prints one JSON object: what each client saw.

    python kserve_client.py HTTP_URL GRPC_ADDRESS MODEL ROWS_JSON
"""
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def outputs(r) -> dict:
    return {o.name: [v.decode() if isinstance(v, bytes) else v for v in o.as_numpy().tolist()] for o in r.outputs}


async def main(url: str, addr: str, model: str, rows: str) -> dict:
    x = np.array(json.loads(rows), np.uint8)
    g = InferenceGRPCClient(addr)
    out = {"grpc_live": await g.is_server_live(), "grpc_ready": await g.is_server_ready(), "grpc_model_ready": await g.is_model_ready(model)}
    inp = InferInput("image", list(x.shape), "UINT8"); inp.set_data_from_numpy(x)
    r = await g.infer(InferRequest(model_name=model, infer_inputs=[inp], request_id="kserve-grpc"))
    out["grpc"] = {"id": r.id, **outputs(r)}
    c = InferenceRESTClient(RESTConfig(protocol="v2"))
    inp = InferInput("image", list(x.shape), "UINT8"); inp.set_data_from_numpy(x)
    r = await c.infer(url, InferRequest(model_name=model, infer_inputs=[inp], request_id="kserve-rest"), model_name=model)
    out["rest"] = {"id": r.id, **outputs(r)}
    out["rest_ready"] = await c.is_model_ready(url, model)
    await c.close() if hasattr(c, "close") else None
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:5]))))

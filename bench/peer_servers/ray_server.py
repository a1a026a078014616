"""Ray Serve around ONNX Runtime: one replica, `@serve.batch` (max_batch_size, batch_wait_timeout_s as Ray Serve's docs
set them), its own JSON on POST /: {"inputs": [[...]]} -> {"outputs": [[...]]}. Runs until it is terminated."""
import signal, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from common import args, session


def main():
    import numpy as np
    import ray
    from ray import serve
    from starlette.requests import Request
    a = args()

    @serve.deployment(num_replicas=1, max_ongoing_requests=64)
    class OnnxModel:
        def __init__(self):
            self.sess = session(a.model, a.threads)

        @serve.batch(max_batch_size=a.max_batch, batch_wait_timeout_s=a.delay_ms / 1000)
        async def run(self, xs: list):
            y = self.sess.run(None, {"image": np.concatenate(xs)})[0]
            return list(y)

        async def __call__(self, request: Request):
            x = np.asarray((await request.json())["inputs"], np.uint8).reshape(-1, *a.shape)
            return {"outputs": [(await self.run(x)).tolist()]}

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": a.port})
    serve.run(OnnxModel.bind(), route_prefix="/", name="m")
    signal.signal(signal.SIGTERM, lambda *_: (serve.shutdown(), ray.shutdown(), sys.exit(0)))
    print("ready", flush=True)
    while True: time.sleep(3600)


if __name__ == "__main__":
    main()

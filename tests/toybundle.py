"""Small real model bundles without torch: a one-layer ONNX graph over 1x2x2 uint8 images, three labels."""
import tempfile
from pathlib import Path


def toy_bundle(store, tag: str, weight: float = 0.01, shape=(1, 2, 2)) -> str:
    "A real, servable bundle (its model card says `tag`, so each tag has its own digest) over uint8 images of `shape` "
    "(C, H, W), stored; returns its digest."
    n = shape[0] * shape[1] * shape[2]
    from onnx import helper, TensorProto
    from mlops_nb.build.bundle import write_bundle
    g = helper.make_graph([helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                           helper.make_node("Flatten", ["f"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])], "toy",
                          [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", *shape])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
                          [helper.make_tensor("w", TensorProto.FLOAT, [n, 3], [weight, 0, -weight] * n)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:                  # the store keeps the bundle: nothing left in /tmp
        d = Path(tmp)
        (d / "model.onnx").write_bytes(m.SerializeToString())
        b = write_bundle(d / "bundle.zip", d / "model.onnx", tuple(shape), ["a", "b", "c"], {"metrics": {"test/accuracy": 0.99, "test/recall_gap": 0.0}},
                         {"source": "digits"}, f"toy model {tag}\n")
        return store.put_file(b)

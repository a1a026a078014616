"""Build: ingest and version data, train, evaluate, package (ONNX, parity gate), register (versions, aliases, gates)."""

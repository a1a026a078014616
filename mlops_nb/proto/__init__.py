"""The Open Inference Protocol's gRPC messages and service stubs, generated from open_inference_grpc.proto by `make proto`."""

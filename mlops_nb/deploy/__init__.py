"""Deploy: the HTTP and gRPC service, its inputs, telemetry and traffic (hot swap, canary, shadow), the application test, release and export."""

"""The pipeline server: hosts pipelines and serves them over gRPC, HTTP and WebRTC."""

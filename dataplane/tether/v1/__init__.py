"""Generated protobuf and gRPC code for the tether.v1 wire contract (built from proto/)."""

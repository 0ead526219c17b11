"""The crossview service: REST and gRPC APIs over the perception, tracking and search core."""

"""Generated gRPC code for ``proto/crossview/v1/crossview.proto`` (``scripts/gen_grpc.sh``; do not edit).

``crossview_pb2`` holds the messages, ``crossview_pb2_grpc`` the client stub (``CrossviewStub``)
and the servicer registration; the server is ``crossview.serve.grpc_server``.
"""

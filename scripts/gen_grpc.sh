#!/usr/bin/env bash
# Regenerate the gRPC Python code in src/crossview/serve/grpc_gen/ from proto/crossview/v1/crossview.proto.
#
# Needs grpcio-tools (its protoc and gRPC plugin): `pip install grpcio-tools`. The generated code
# checks at import time that the installed protobuf and grpcio are at least the versions it was
# generated with, so regenerate with the oldest grpcio-tools the project supports, or raise the
# project's minimum protobuf and grpcio versions to match (see the headers of the generated files).
#
# Usage: scripts/gen_grpc.sh [PYTHON]   (default: python; e.g. .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${1:-python}
out=src/crossview/serve/grpc_gen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m grpc_tools.protoc -Iproto \
    --python_out="$work" --pyi_out="$work" --grpc_python_out="$work" \
    proto/crossview/v1/crossview.proto

generated="$work/crossview/v1"
# protoc names the message module by the proto's path (crossview.v1.crossview_pb2), which would clash
# with the crossview package: import it relative to grpc_gen instead.
sed -i -E 's/^from crossview\.v1 import crossview_pb2 as /from . import crossview_pb2 as /' \
    "$generated/crossview_pb2_grpc.py"
if grep -q '^from crossview\.v1' "$generated/crossview_pb2_grpc.py"; then
    echo "gen_grpc.sh: could not rewrite the message import in crossview_pb2_grpc.py" >&2
    exit 1
fi

mkdir -p "$out"
# generated code is neither linted, formatted nor type-checked (the messages' types come from the .pyi)
for name in crossview_pb2.py crossview_pb2.pyi crossview_pb2_grpc.py; do
    {
        echo "# ruff: noqa"
        echo "# fmt: off"
        echo "# mypy: ignore-errors"
        echo "# Generated from proto/crossview/v1/crossview.proto by scripts/gen_grpc.sh: do not edit."
        cat "$generated/$name"
    } >"$out/$name"
done
echo "generated $out/crossview_pb2.py, crossview_pb2.pyi, crossview_pb2_grpc.py"

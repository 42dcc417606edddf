#!/usr/bin/env bash
# Set up archspace on a fresh machine: the real Fashion-MNIST (Debian package), a virtual
# environment in .venv with the CPU build of torch, archspace itself and its test extras.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing dataset-fashion-mnist (Debian)"
    apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: warning: Fashion-MNIST missing; run 'sudo apt-get install dataset-fashion-mnist' or pass --dataset-root" >&2
  fi
fi
# PostgreSQL server for the multi-worker tests (started by the tests themselves on a loopback port).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing postgresql (Debian)"
    apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: note: postgresql missing; the PostgreSQL tests will be skipped" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch 2.13.0 is the CPU build on this kind of machine; an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[test,ray,onnx,postgres,html,tensorboard,analysis]"
echo "setup: ok ($(.venv/bin/python -c 'import torch, archspace; print("archspace", archspace.__version__, "torch", torch.__version__)'))"

"""Hearth: a private, self-hosted AI stack — train, fine-tune, inspect, know, act and serve."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hearth")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0.dev0"

import os as _os

# OpenMP threads that spin while waiting made token-by-token decoding 10-25x slower on a 2-core CPU
# as soon as other work shared the cores (1.5x faster when idle; bench/decode.py, README). Passive
# waiting must be chosen before torch loads, so it is set here, at the first Hearth import; a user's
# own OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging as _logging

# peft imports torchao (installed for QLoRA without CUDA), and torchao logs a warning for each of its
# CUDA kernels it cannot load on a CPU-only host, then torch warns about its enums: lines on every
# model load that say nothing about the user's work. NF4 needs none of those kernels.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

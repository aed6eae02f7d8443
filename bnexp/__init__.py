"""bnexp: Hydra-configured batch-normalization experiments on Apache MXNet."""
# MXNet reads its thread settings once, at import: settle them before any
# bnexp module (or the user) imports mxnet.
from bnexp import mxenv as _mxenv

_mxenv.configure()

"""The network a normalization is placed in, known before anything is built (and so before
MXNet is imported): what an option's `check` may need to say no (bnexp/options.py).

A model option says where it normalizes with a module-level `normalized_layers(**settings)`
beside its target (bnexp/nn/lenet.py); a model that does not say leaves `sites` None, and
checks that need them pass."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NormSite:
    """A layer a normalization follows."""
    width: int      # channels (convolution) or units (dense)
    spatial: bool   # a convolution's output has positions to average over; a dense layer's has none


@dataclass(frozen=True)
class NetworkPlan:
    sites: tuple[NormSite, ...] | None   # where the model normalizes, in order; None: not said
    model: str                           # the model option, e.g. "model=lenet model.bn_on_dense=true"
    batch_per_device: int                # the images each device normalizes at a training step
    devices: int
    monitors: tuple[str, ...] = ()       # the monitors chosen (some run the network on the side)

    def widths(self) -> list[int]:
        return [site.width for site in self.sites or ()]

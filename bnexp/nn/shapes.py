"""The widths of the layers each model normalizes, known without building the model (and
so without MXNet): the config check needs them before MXNet is imported (a group count
must divide every normalized layer's channels). The models build from the same numbers."""
from __future__ import annotations

from dataclasses import dataclass

from bnexp.config import ModelConfig

LENET_CONV_CHANNELS = (20, 50)  # conv(20, 5x5), conv(50, 3x3)
LENET_DENSE_UNITS = 128         # the hidden dense layer


@dataclass(frozen=True)
class NormalizedLayer:
    width: int      # channels (conv) or units (dense)
    spatial: bool   # a convolution's output has positions to average over; a dense layer's has none


def normalized_layers(model: ModelConfig) -> list[NormalizedLayer]:
    """The layers a normalization follows in `model`, in order."""
    if model.name == "lenet":
        conv = [NormalizedLayer(c, True) for c in LENET_CONV_CHANNELS]
        return conv + ([NormalizedLayer(LENET_DENSE_UNITS, False)] if model.bn_on_dense else [])
    if model.name == "mlp":
        return [NormalizedLayer(units, False) for units in model.hidden]
    raise ValueError(f"bnexp/nn/shapes.py does not know the layers of model {model.name!r}")

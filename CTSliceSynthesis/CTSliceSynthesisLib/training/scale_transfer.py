"""Start a model for one factor r from a trained model for another.

Only the output convolutions of SInt-A and PInt depend on r: they predict the r − 1 in-between slices, one
channel per fraction k/r. Every other weight is copied. The output channels of the new factor are interpolated
linearly, along the fraction k/r, from those of the trained factor, so the new model starts as a reasonable
interpolator rather than as the bare classical base.
"""

from __future__ import annotations

import torch

from ..core.config import model_config
from ..nets.synthesis import SynthesisNetworks


def _fraction_weights(old_scale: int, new_scale: int) -> torch.Tensor:
    """(new r − 1, old r − 1) matrix: linear interpolation of channels at fractions k/old → k/new.

    Fractions outside the trained ones are clamped to the nearest trained channel.
    """
    old = torch.arange(1, old_scale, dtype=torch.float64) / old_scale
    new = torch.arange(1, new_scale, dtype=torch.float64) / new_scale
    weights = torch.zeros(new_scale - 1, old_scale - 1, dtype=torch.float64)
    for row, fraction in enumerate(new.tolist()):
        if fraction <= old[0]:
            weights[row, 0] = 1.0
        elif fraction >= old[-1]:
            weights[row, -1] = 1.0
        else:
            upper = int(torch.searchsorted(old, torch.tensor(fraction, dtype=torch.float64)))
            lower = upper - 1
            t = (fraction - float(old[lower])) / float(old[upper] - old[lower])
            weights[row, lower], weights[row, upper] = 1.0 - t, t
    return weights


def transfer_to_scale(source: SynthesisNetworks, scale: int) -> SynthesisNetworks:
    """A new :class:`SynthesisNetworks` for ``scale`` with ``source``'s weights (output heads interpolated)."""
    target = SynthesisNetworks(model_config(source.config.preset, scale))
    if {**source.config.to_dict(), "scale": scale} != target.config.to_dict():
        raise ValueError("the source model's sizes differ from its preset's: cannot transfer it to another factor")
    mix = _fraction_weights(source.scale, scale)
    state = {}
    for name, value in source.state_dict().items():
        if ".head_out." in name:
            value = torch.tensordot(mix.to(value.dtype), value, dims=([1], [0]))
        state[name] = value
    target.load_state_dict(state)
    return target

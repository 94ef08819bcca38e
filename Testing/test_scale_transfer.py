"""Starting a model for one factor from another's weights: only the output heads change, by interpolation."""

import pytest
import torch

from CTSliceSynthesisLib.core.config import model_config
from CTSliceSynthesisLib.nets.synthesis import SynthesisNetworks
from CTSliceSynthesisLib.training.scale_transfer import _fraction_weights, transfer_to_scale


def test_fraction_weights_interpolate_between_trained_fractions():
    # ×4 trains fractions 1/4, 2/4, 3/4; ×5 needs 1/5 (clamped to 1/4), 2/5, 3/5, 4/5 (clamped to 3/4).
    weights = _fraction_weights(4, 5)
    expected = torch.tensor([[1, 0, 0], [0.4, 0.6, 0], [0, 0.6, 0.4], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(weights, expected)
    assert torch.allclose(weights.sum(dim=1), torch.ones(4, dtype=torch.float64))


def test_same_scale_transfer_is_the_identity():
    torch.manual_seed(0)
    source = SynthesisNetworks(model_config("lite", 3))
    copy = transfer_to_scale(source, 3)
    for (name, a), (_, b) in zip(source.state_dict().items(), copy.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("scale", [2, 5, 6])
def test_transfer_copies_the_body_and_resizes_the_heads(scale):
    torch.manual_seed(0)
    source = SynthesisNetworks(model_config("lite", 4))
    for parameter in source.parameters():
        torch.nn.init.normal_(parameter)
    target = transfer_to_scale(source, scale)
    assert target.scale == scale
    assert target.pint.head_out.weight.shape[0] == scale - 1
    assert target.sint.head_out.weight.shape[0] == scale - 1
    source_state, target_state = source.state_dict(), target.state_dict()
    for name, value in source_state.items():
        if ".head_out." not in name:
            assert torch.equal(target_state[name], value), name
    # Fraction 1/2 exists at ×2 and ×4: its head channel is copied exactly.
    if scale == 2:
        assert torch.equal(target.pint.head_out.weight[0], source.pint.head_out.weight[1])

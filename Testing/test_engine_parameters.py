"""Parameter counts of both presets against the spec (§2.3, §4.3, §14) and the memory bank's status as state."""

from __future__ import annotations

from typing import Dict

import pytest
import torch
from torch import nn

from CTSliceSynthesisLib.core.config import model_config
from CTSliceSynthesisLib.nets import SynthesisNetworks

SCALES = (2, 3, 4)

# spec §2.3 / §4.3 (paper preset, code-exact) and §14 lite-B.
PAPER_SINT = {2: 53_460_586, 3: 53_460_590, 4: 53_460_594}
PAPER_PINT = {2: 891_839, 3: 892_128, 4: 892_417}
PAPER_TOTAL = {2: 54_352_425, 3: 54_352_718, 4: 54_353_011}
LITE_SINT = {2: 1_483_828, 3: 1_483_830, 4: 1_483_832}
LITE_PINT = {2: 37_999, 3: 38_144, 4: 38_289}


def count(module: nn.Module) -> int:
    """Number of trainable values in ``module``."""
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def paper_networks() -> Dict[int, SynthesisNetworks]:
    """The paper preset at r = 2, 3, 4, built once for the whole module (a few seconds)."""
    torch.manual_seed(0)
    return {r: SynthesisNetworks(model_config("paper", r)) for r in SCALES}


@pytest.fixture(scope="module")
def lite_networks() -> Dict[int, SynthesisNetworks]:
    """The lite preset at r = 2, 3, 4."""
    torch.manual_seed(0)
    return {r: SynthesisNetworks(model_config("lite", r)) for r in SCALES}


@pytest.mark.parametrize("scale", SCALES)
def test_paper_sint_count(paper_networks: Dict[int, SynthesisNetworks], scale: int) -> None:
    """SInt-A paper preset: 53,460,586 / 590 / 594 (spec §2.3)."""
    assert count(paper_networks[scale].sint) == PAPER_SINT[scale]


@pytest.mark.parametrize("scale", SCALES)
def test_paper_pint_count(paper_networks: Dict[int, SynthesisNetworks], scale: int) -> None:
    """PInt paper preset: 891,839 / 892,128 / 892,417 (spec §4.3)."""
    assert count(paper_networks[scale].pint) == PAPER_PINT[scale]


@pytest.mark.parametrize("scale", SCALES)
def test_paper_full_model_count(paper_networks: Dict[int, SynthesisNetworks], scale: int) -> None:
    """Both networks together: 54,352,425 / 718 / 54,353,011 (spec §4.3), without the memory."""
    assert count(paper_networks[scale]) == PAPER_TOTAL[scale]


def test_paper_sint_part_counts(paper_networks: Dict[int, SynthesisNetworks]) -> None:
    """The per-part breakdown of spec §2.3 (SRCAB, SRG, heads, tails, stem, output conv)."""
    sint = paper_networks[4].sint
    groups = list(sint.encoder_groups) + list(sint.decoder_groups)
    assert len(groups) == 6
    assert count(groups[0].body[0]) == 668_748  # one SRCAB
    assert sum(1 for _ in groups[0].body) == 13  # 12 SRCABs + the group conv
    assert all(count(g) == 8_356_944 for g in groups)
    heads = [sint.encoder_head] + list(sint.decoder_heads)
    assert sum(count(h) for h in heads) == 2_654_976
    assert count(sint.encoder_tail) + count(sint.decoder_tail) == 663_936
    assert count(sint.stem) == 6
    assert count(sint.head_out) == 4 * (4 - 1)


def test_paper_pint_part_counts(paper_networks: Dict[int, SynthesisNetworks]) -> None:
    """The per-part breakdown of spec §4.3 (PRCAB, PRG, head, body conv, LAM, fuse, CSAM, output conv)."""
    pint = paper_networks[3].pint
    assert len(pint.groups) == 5
    assert count(pint.groups[0].body[0]) == 19_048
    assert all(count(g) == 161_632 for g in pint.groups)
    assert count(pint.head) == 320
    assert count(pint.body_tail) == 9_248
    assert count(pint.layer_fuse) == 55_328
    assert count(pint.fuse) == 18_464
    assert count(pint.channel_spatial_attention) == 28 + 1
    assert count(pint.layer_attention) == 1
    assert count(pint.head_out) == 289 * (3 - 1)


@pytest.mark.parametrize("scale", SCALES)
def test_lite_counts(lite_networks: Dict[int, SynthesisNetworks], scale: int) -> None:
    """Lite preset (spec §14 lite-B): SInt 1,483,828 / 830 / 832 and PInt 37,999 / 38,144 / 38,289."""
    networks = lite_networks[scale]
    assert count(networks.sint) == LITE_SINT[scale]
    assert count(networks.pint) == LITE_PINT[scale]


@pytest.mark.parametrize("preset, items, dim", [("paper", 10, 192), ("lite", 10, 64)])
def test_memory_is_state_not_parameter(
    paper_networks: Dict[int, SynthesisNetworks],
    lite_networks: Dict[int, SynthesisNetworks],
    preset: str,
    items: int,
    dim: int,
) -> None:
    """The m×d memory is in ``state_dict`` but neither a parameter nor in an optimizer built from them."""
    networks = (paper_networks if preset == "paper" else lite_networks)[2]
    memory = networks.sint.memory.items
    assert memory.shape == (items, dim)
    assert not memory.requires_grad

    state = networks.state_dict()
    assert "sint.memory.items" in state
    assert torch.equal(state["sint.memory.items"], memory)
    assert all("memory" not in name for name, _ in networks.named_parameters())
    # The memory is the only non-parameter state: exactly m·d extra values.
    assert sum(t.numel() for t in state.values()) - count(networks) == items * dim

    optimizer = torch.optim.Adam(networks.parameters())
    optimised = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(optimised) == len(list(networks.parameters()))
    assert all(p.data_ptr() != memory.data_ptr() for p in optimised)

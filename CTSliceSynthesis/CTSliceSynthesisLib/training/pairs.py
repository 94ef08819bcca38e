"""Scale-matched training pairs for PInt, made from axial images at the geometry the net is used at (in mm).

PInt super-resolves coronal and sagittal images along z: one axis at the in-plane pixel size, the other at the
slice spacing Δz with the slice profile T, to Δz/r. An axial image has two in-plane axes, both finer than Δz/r
on most CT. One of them plays z: its lines are averaged over boxes of T every Δz (the input) and over thin boxes
of Δz/r every Δz/r (the target); the other axis stays at the pixel size, exactly like the in-plane axis of a
coronal image. The pairs need no thin-slice ground truth and match the deployed geometry, unlike pairs made by
thinning z once more (SR4ZCT, Shi et al. MLMI 2023; SMORE, Zhao et al. TMI 2021; see the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ..core.errors import InputError
from ..core.intensity import hu_to_unit
from .data import TrainingVolume
from .profiles import ProfileRange, box_average, line_integrals

# A patch whose target varies by less than this (HU, standard deviation) is air or a uniform region: it is
# drawn again, up to AIR_REDRAWS times, so that training sees anatomy.
AIR_STD_HU = 20.0
AIR_REDRAWS = 8
MIN_ROWS = 8


@dataclass(frozen=True)
class PairShape:
    """Patch size of a pair: ``rows`` pixels along the in-plane axis, ``columns`` input slices along "z"."""

    rows: int = 48
    columns: int = 12


class InPlanePairSampler:
    """Draws batches of scale-matched pairs ``(low (N, 1, A, L), target (N, 1, A, r(L − 1) + 1))`` in [0, 1].

    Each pair comes from a random axial image of a random volume; the first half of a batch uses the image's
    last axis as "z" (as a coronal image has z after the other in-plane axis), the second half its first axis
    (as a sagittal image). Δz and T are drawn per pair from ``profiles``, or with ``own_geometry`` Δz is the
    volume's own slice spacing and T its thickness when known. Target columns ``m·r`` sit exactly at input
    column ``m`` (they are thin, the input thick: PInt passes the input through there). Patches of air are
    redrawn, and pairs are flipped along both axes at random. All randomness comes from ``generator``.
    """

    def __init__(
        self,
        volumes: Sequence[TrainingVolume],
        scale: int,
        profiles: ProfileRange,
        generator: torch.Generator,
        shape: PairShape = PairShape(),
        own_geometry: bool = False,
    ) -> None:
        self.scale = scale
        self.own_geometry = own_geometry
        self.profiles = profiles
        self.generator = generator
        self.volumes: List[TrainingVolume] = [v for v in volumes if min(v.data.shape[1:]) > MIN_ROWS]
        if not self.volumes:
            raise InputError(f"no training volume is larger than {MIN_ROWS} pixels in-plane")
        # Small images (tests, tiny crops) get shorter patches rather than none.
        rows = min(shape.rows, min(min(v.data.shape[1:]) for v in self.volumes) - 1)
        self.shape = PairShape(rows, shape.columns)

    @property
    def target_columns(self) -> int:
        """Columns of a target: ``r(L − 1) + 1``."""
        return self.scale * (self.shape.columns - 1) + 1

    def _integer(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator))

    def sample(self, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """A batch of pairs in [0, 1]: ``(low, target)``; the first ``⌈batch/2⌉`` along the image's last axis."""
        pairs = [self.sample_one(along_last=index < (batch + 1) // 2) for index in range(batch)]
        low = torch.stack([pair[0] for pair in pairs])[:, None]
        target = torch.stack([pair[1] for pair in pairs])[:, None]
        return hu_to_unit(low), hu_to_unit(target)

    def sample_one(self, along_last: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """One pair in HU: ``low (A, L)`` and ``target (A, r(L − 1) + 1)``."""
        for attempt in range(AIR_REDRAWS + 1):
            low, target = self._draw(along_last)
            if float(target.std()) >= AIR_STD_HU or attempt == AIR_REDRAWS:
                break
        if self._integer(2):
            low, target = low.flip(0), target.flip(0)
        if self._integer(2):
            low, target = low.flip(1), target.flip(1)
        return low, target

    def _draw(self, along_last: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        volume = self.volumes[self._integer(len(self.volumes))]
        image = volume.data[self._integer(volume.data.shape[0])]
        pixel = float(volume.in_plane[1] if along_last else volume.in_plane[0])
        if not along_last:
            image = image.T
        rows, length = image.shape
        if self.own_geometry:
            spacing, thickness = self.profiles.draw(self.generator, volume.slice_spacing, volume.thickness)
        else:
            spacing, thickness = self.profiles.draw(self.generator)
        # The input spans (L − 1)·Δz plus half a profile at each end; shrink Δz if the image is too short.
        room = (length - 3) * pixel
        needed = (self.shape.columns - 1) * spacing + max(thickness, spacing / self.scale)
        if needed > room:
            shrink = room / needed
            spacing, thickness = spacing * shrink, thickness * shrink
        step = spacing / self.scale / pixel
        margin = max(thickness, spacing / self.scale) / pixel / 2 + 1
        span = step * (self.target_columns - 1)
        first = margin + float(torch.rand((), generator=self.generator)) * max(length - 1 - 2 * margin - span, 0.0)
        top = self._integer(rows - self.shape.rows + 1)
        lines = torch.from_numpy(np.ascontiguousarray(image[top : top + self.shape.rows], dtype=np.float32))
        integrals = line_integrals(lines)
        centres = first + step * torch.arange(self.target_columns, dtype=torch.float32)
        target = box_average(lines, centres, step, integrals)
        low = box_average(lines, centres[:: self.scale], thickness / pixel, integrals)
        return low, target

"""Whole-volume synthesis: SInt-A on axial pairs, PInt on coronal and sagittal images, eq. 7 fusion.

Work is streamed in chunks: SInt pairs and PInt images are processed a few at a time and summed into one
float32 accumulator that holds only the synthesized slices, so the peak memory is about the input, the output
and that accumulator. Acquired slices are copied from the input, bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.callbacks import CancelCheck, ProgressCallback
from ..core.errors import InputError, SynthesisCancelled
from ..core.geometry import upsampled_length
from ..core.intensity import HU_MAX, HU_MIN, hu_to_unit
from ..io.checks import check_volume
from ..nets.cubic_base import cubic_between
from ..nets.views import interpolate_axial, new_positions
from .fusion import VIEWS, FusionWeights
from .model_store import SynthesisModel
from .precision import autocast_to

# Budgets per network call, in input pixels: large enough to keep the conv kernels busy, small enough that the
# activations stay in cache-friendly sizes (tuned on 2 CPU cores; see Testing/benchmarks).
SINT_PIXELS_PER_CALL = 8 * 512 * 512
PINT_PIXELS_PER_CALL = 256 * 1024
# Slices of context on each side of an axial chunk for the cubic base: the B-spline prefilter's influence decays
# as 0.268^k, so 10 slices keep the base within 2e-6 (relative) of the whole-volume spline.
CUBIC_CONTEXT_SLICES = 10
# Only the body needs PInt: voxels above BODY_HU (soft tissue, bone, the table) in any slice, with a margin of
# BODY_MARGIN pixels of air (beyond the convolutions' reach from the body). The rest, air, gets cubic
# interpolation. PInt's channel attention pools over the image it is given, so the crop moves body voxels by
# up to 0.15 HU (measured, trained lite ×4). SInt-A's attention reacts more (up to 12 HU), so the crop is used
# only when SInt-A is not (the default "pint" fusion, no disagreement map). Cropping is skipped when the box
# covers more than CROP_MAX_AREA of the image.
BODY_HU = -500.0
BODY_MARGIN = 16
CROP_MAX_AREA = 0.85
# Finer than the box, and used in its place for PInt alone: each coronal (sagittal) image is run only on its
# columns (rows) of body, with a margin of air on each side as wide as the 3×3 convolutions PInt chains
# (pint_conv_chain: RUN_MARGIN = 16 for lite, 91 for paper), so what a convolution sees at the edge of a run
# never reaches the body. The body in each axial
# position is the in-plane projection of voxels above BODY_HU with its holes (lungs, airways) filled: a pixel
# with body on both sides in its row and in its column. Runs of one chunk of images are their union; air gaps
# narrower than RUN_MIN_GAP pixels are run through rather than split. Outside the runs the view is its cubic
# base (air is flat). As with the box, the attention's pooling sees only the run (measured: Testing/benchmarks).
RUN_CROPPING = True
RUN_MARGIN = 16
RUN_MIN_GAP = 32


@dataclass
class SynthesisResult:
    """The synthesized volume (input dtype) and, if asked for, the cross-view disagreement in HU (float32).

    The disagreement is the standard deviation of the three views (SInt-A, PInt-C, PInt-S) at each synthesized
    voxel, and 0 at acquired slices.
    """

    volume: np.ndarray
    disagreement: Optional[np.ndarray] = None
    fusion: Optional[FusionWeights] = None


def synthesize_volume(
    volume: np.ndarray,
    scale: int,
    model: SynthesisModel,
    *,
    axis: int = 2,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCheck] = None,
    with_disagreement: bool = False,
    views: Sequence[str] = VIEWS,
    fusion: Optional[FusionWeights] = None,
) -> SynthesisResult:
    """Synthesize ``scale − 1`` slices between each pair of neighbouring slices along ``axis``.

    ``volume`` is in HU, any axis order; the result has ``(n − 1)·scale + 1`` slices along ``axis``, the
    input's dtype (integers rounded and clipped to the dtype's range), and ``result[::scale] == volume`` along
    ``axis`` exactly. Synthesized voxels are clipped to [−1024, 3072] HU, the networks' range.
    ``progress(fraction, message)`` is called as work completes; ``cancel()`` returning True stops the work
    with :class:`SynthesisCancelled`. The synthesized slices mix the views with ``fusion``: given weights (e.g.
    fitted on this volume by :func:`calibration.calibrated_weights`), or ``None`` for the mean of ``views`` (all
    three by default: eq. 7; a subset is an ablation).
    """
    check_volume(volume, scale, axis)
    if model.scale != scale:
        raise InputError(f"the model was trained for ×{model.scale}, not ×{scale}")
    if fusion is not None and not isinstance(fusion, FusionWeights):
        raise InputError(f"fusion must be FusionWeights or None, got {fusion!r} (calibrate first: calibration.py)")
    weights = fusion if fusion is not None else FusionWeights.equal_views(views)
    needed = [view for view in VIEWS if getattr(weights, view) > 0 or with_disagreement]
    source = np.moveaxis(volume, axis, 0)
    classical = weights.linear > 0 or weights.cubic > 0
    mask = body_mask(source) if "axial" not in needed and RUN_CROPPING else None
    box = body_box(source) if "axial" not in needed and mask is None else None
    passes = len(needed) * _area_fraction(source, box) + (0.2 if classical or box is not None else 0.0)
    if mask is not None:
        margin = pint_conv_chain(model.networks.pint)
        passes = sum(_run_fraction(mask, view, margin) for view in needed) + (0.2 if classical else 0.0)
    run = _Synthesis(source, model, progress, cancel, passes=passes, mask=mask)
    if box is None:
        fused, spread = _fuse_views(run, weights, with_disagreement)
    else:  # the networks see the body and a margin of air; the air further out gets cubic interpolation
        fused = np.zeros(run.new_shape, dtype=np.float32)
        run.classical(fused, 0.0, 1.0)
        region = (slice(None), slice(box[0], box[1]), slice(box[2], box[3]))
        inner = _Synthesis(np.ascontiguousarray(source[region]), model, None, None, parent=run)
        fused[region], inner_spread = _fuse_views(inner, weights, with_disagreement)
        spread = None
        if inner_spread is not None:
            spread = np.zeros((upsampled_length(source.shape[0], scale),) + source.shape[1:], dtype=np.float32)
            spread[region] = inner_spread
    output = _assemble(source, fused, scale)
    run.report(1.0, "done")
    disagreement = None if spread is None else np.moveaxis(spread, 0, axis)
    return SynthesisResult(np.moveaxis(output, 0, axis), disagreement, weights)


def body_box(source: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """The in-plane box ``(top, bottom, left, right)`` of a z-first HU volume that holds every voxel above
    :data:`BODY_HU` in any slice, widened by :data:`BODY_MARGIN` pixels; ``None`` when it covers more than
    :data:`CROP_MAX_AREA` of the image (cropping would not pay) or nothing is above the threshold."""
    _, height, width = source.shape
    body = np.zeros((height, width), dtype=bool)
    for start in range(0, source.shape[0], 16):  # slabs: no full-size boolean volume
        body |= (source[start : start + 16] > BODY_HU).any(axis=0)
    rows, columns = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    if rows.size == 0:
        return None
    top, bottom = max(rows[0] - BODY_MARGIN, 0), min(rows[-1] + 1 + BODY_MARGIN, height)
    left, right = max(columns[0] - BODY_MARGIN, 0), min(columns[-1] + 1 + BODY_MARGIN, width)
    if (bottom - top) * (right - left) > CROP_MAX_AREA * height * width:
        return None
    return int(top), int(bottom), int(left), int(right)


def body_mask(source: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool of a z-first HU volume: the pixels above :data:`BODY_HU` in any slice, with the holes that
    have body on both sides in their row and in their column (lungs, airways, bowel gas) filled."""
    _, height, width = source.shape
    body = np.zeros((height, width), dtype=bool)
    for start in range(0, source.shape[0], 16):  # slabs: no full-size boolean volume
        body |= (source[start : start + 16] > BODY_HU).any(axis=0)
    left = np.logical_or.accumulate(body, axis=1)
    right = np.logical_or.accumulate(body[:, ::-1], axis=1)[:, ::-1]
    top = np.logical_or.accumulate(body, axis=0)
    bottom = np.logical_or.accumulate(body[::-1], axis=0)[::-1]
    return body | (left & right & top & bottom)


def _lines(mask: np.ndarray, view: str) -> np.ndarray:
    """The mask as one line per image of ``view``: ``(H, W)`` for coronal, ``(W, H)`` for sagittal."""
    return mask if view == "coronal" else mask.T


def pint_conv_chain(pint) -> int:
    """The number of 3×3 convolutions on PInt's longest path: head, 2 per RCAB and 1 per residual group,
    body tail, layer fusion, the spatial attention's convolution, fuse, the spatial attention again, head_out."""
    return 6 + sum(2 * (len(group.body) - 1) + 1 for group in pint.groups)


def image_runs(lines: np.ndarray, margin: int = RUN_MARGIN) -> list:
    """Runs ``[(lo, hi), …]`` along the image of the union of ``lines (n, A)`` (body pixels), each widened by
    ``margin`` and clipped to ``[0, A)``; runs closer than :data:`RUN_MIN_GAP` are merged."""
    body = np.flatnonzero(lines.any(axis=0))
    if body.size == 0:
        return []
    length = lines.shape[1]
    breaks = np.flatnonzero(np.diff(body) > 1)
    starts, stops = body[np.r_[0, breaks + 1]], body[np.r_[breaks, body.size - 1]] + 1
    runs: list = []
    for lo, hi in zip(starts - margin, stops + margin):
        lo, hi = max(int(lo), 0), min(int(hi), length)
        if runs and lo - runs[-1][1] < RUN_MIN_GAP:
            runs[-1] = (runs[-1][0], hi)
        else:
            runs.append((lo, hi))
    return runs


def _run_fraction(mask: np.ndarray, view: str, margin: int) -> float:
    """Fraction of a view's pixels that PInt processes under run cropping (images one by one)."""
    lines = _lines(mask, view)
    covered = sum(hi - lo for line in lines for lo, hi in image_runs(line[None], margin))
    return covered / float(lines.size)


def _area_fraction(source: np.ndarray, box: Optional[Tuple[int, int, int, int]]) -> float:
    if box is None:
        return 1.0
    return (box[1] - box[0]) * (box[3] - box[2]) / float(source.shape[1] * source.shape[2])


def _fuse_views(
    run: "_Synthesis", weights: FusionWeights, with_disagreement: bool
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The views mixed with ``weights`` at the synthesized slices ``(n_new, H, W)`` (float32 units), and with
    ``with_disagreement`` the spread of the three views (HU, over all output slices)."""
    spread = None
    if with_disagreement:
        fused = run.axial()
        # Keep the views apart to measure their spread, then mix: Σ w·V = w_total·A + w_c(C − A) + w_s(S − A).
        coronal_minus_axial = run.pixel_view(fused, "coronal", subtract=True)
        sagittal_minus_axial = run.pixel_view(fused, "sagittal", subtract=True)
        spread = _view_spread(coronal_minus_axial, sagittal_minus_axial, run.source.shape, run.scale)
        fused *= weights.view_total
        coronal_minus_axial *= weights.coronal
        fused += coronal_minus_axial
        sagittal_minus_axial *= weights.sagittal
        fused += sagittal_minus_axial
        del coronal_minus_axial, sagittal_minus_axial
    else:  # one accumulator: w_a·A, then + w_c·C, + w_s·S
        if weights.axial > 0:
            fused = run.axial()
            fused *= weights.axial
        else:
            fused = np.zeros(run.new_shape, dtype=np.float32)
        for view in ("coronal", "sagittal"):
            if getattr(weights, view) > 0:
                run.pixel_view(fused, view, subtract=False, weight=getattr(weights, view))
    if weights.linear > 0 or weights.cubic > 0:
        run.classical(fused, weights.linear, weights.cubic)
    return fused, spread


class _Synthesis:
    """One synthesis run over a z-first volume ``(S, H, W)``; keeps progress accounting and cancellation.

    A run over a crop of another run's volume (``parent``) reports its work and checks for cancellation there.
    """

    def __init__(
        self,
        source: np.ndarray,
        model: SynthesisModel,
        progress: Optional[ProgressCallback],
        cancel: Optional[CancelCheck],
        passes: float = len(VIEWS),
        parent: Optional["_Synthesis"] = None,
        mask: Optional[np.ndarray] = None,
    ) -> None:
        self.parent = parent
        self.mask = mask  # body_mask: PInt on runs of body only
        self.source = source
        self.model = model
        self.scale = model.scale
        self.progress = progress
        self.cancel = cancel
        slices, height, width = source.shape
        self.new_count = (slices - 1) * (self.scale - 1)
        self.new_index = new_positions(upsampled_length(slices, self.scale), self.scale)
        self.new_shape = (self.new_count, height, width)
        # Progress is counted in input pixels processed, one pass over the volume per view.
        self.total_work = float(passes) * slices * height * width
        self.done_work = 0.0

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(min(max(fraction, 0.0), 1.0), message)

    def _step(self, work: float, message: str) -> None:
        if self.parent is not None:
            self.parent._step(work, message)
            return
        if self.cancel is not None and self.cancel():
            raise SynthesisCancelled("synthesis cancelled")
        self.done_work += work
        self.report(self.done_work / self.total_work, message)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return hu_to_unit(tensor).to(self.model.device)

    @torch.no_grad()
    def axial(self) -> np.ndarray:
        """SInt-A on every neighbouring pair: ``(n_new, H, W)`` float32, normalised units."""
        slices, height, width = self.source.shape
        result = np.empty((self.new_count, height, width), dtype=np.float32)
        pairs_per_call = max(1, SINT_PIXELS_PER_CALL // (height * width))
        sint, per_pair = self.model.networks.sint, self.scale - 1
        context = CUBIC_CONTEXT_SLICES if sint.base_kind == "cubic" else 0
        for start in range(0, slices - 1, pairs_per_call):
            stop = min(start + pairs_per_call, slices - 1)
            low, high = max(0, start - context), min(slices, stop + 1 + context)
            stack = self._tensor(self.source[low:high])[None]
            with autocast_to(self.model.device, self.model.precision):
                new, _, _ = interpolate_axial(sint, stack, first_pair=start - low, pair_count=stop - start)
            result[start * per_pair : stop * per_pair] = new[0].float().cpu().numpy()
            self._step((stop - start) * height * width, "axial view (SInt-A)")
        return result

    @torch.no_grad()
    def pixel_view(self, accumulator: np.ndarray, view: str, subtract: bool, weight: float = 1.0) -> np.ndarray:
        """PInt on every coronal or sagittal image, at the synthesized slices ``(n_new, H, W)`` (float32 units).

        With ``subtract`` returns a new array holding the view minus ``accumulator``; otherwise adds ``weight``
        times the view into ``accumulator`` in place and returns it.
        """
        slices, height, width = self.source.shape
        coronal = view == "coronal"
        count, in_plane = (height, width) if coronal else (width, height)
        per_call = max(1, PINT_PIXELS_PER_CALL // (in_plane * slices))
        result = np.empty_like(accumulator) if subtract else accumulator
        margin = pint_conv_chain(self.model.networks.pint)
        for start in range(0, count, per_call):
            stop = min(start + per_call, count)
            if coronal:  # images fix an index of H: (h, 1, W, S)
                chunk = self._tensor(self.source[:, start:stop, :]).permute(1, 2, 0)
            else:  # images fix an index of W: (w, 1, H, S)
                chunk = self._tensor(self.source[:, :, start:stop]).permute(2, 1, 0)
            runs = [(0, in_plane)] if self.mask is None else image_runs(_lines(self.mask, view)[start:stop], margin)
            out, processed = self._pint_on_runs(chunk, runs)
            # (images, in-plane, n_new) → the z-first block of this chunk
            block = out.transpose(2, 0, 1) if coronal else out.transpose(2, 1, 0)
            region = (slice(None), slice(start, stop)) if coronal else (slice(None), slice(None), slice(start, stop))
            if subtract:
                np.subtract(block, accumulator[region], out=result[region])
            else:
                result[region] += block if weight == 1.0 else weight * block
            self._step(processed, f"{view} view (PInt)")
        return result

    def _pint_on_runs(self, chunk: torch.Tensor, runs: list) -> Tuple[np.ndarray, int]:
        """PInt at the synthesized positions of images ``chunk (n, A, S)`` on ``runs`` along ``A``, the cubic
        base elsewhere: ``(n, A, n_new)`` float32 units, and the number of pixels PInt processed."""
        count, length, slices = chunk.shape
        covered = sum(hi - lo for lo, hi in runs)
        pint = self.model.networks.pint
        if runs == [(0, length)]:  # the whole images
            with autocast_to(self.model.device, self.model.precision):
                out = pint.new_values(chunk[:, None].contiguous())  # strided images slow the first conv down
            return out.cpu().numpy(), covered * count * slices
        out = cubic_between(chunk, self.scale, dim=-1)  # air outside the runs: the cubic base along z
        for lo, hi in runs:
            with autocast_to(self.model.device, self.model.precision):
                out[:, lo:hi] = pint.new_values(chunk[:, None, lo:hi].contiguous())
        return out.cpu().numpy(), covered * count * slices

    @torch.no_grad()
    def classical(self, accumulator: np.ndarray, linear: float, cubic: float) -> None:
        """Add ``linear`` × linear and ``cubic`` × cubic B-spline interpolation along z into ``accumulator``."""
        slices, height, width = self.source.shape
        per_pair = self.scale - 1
        pairs_per_call = max(1, 4 * SINT_PIXELS_PER_CALL // (height * width))
        fractions = torch.arange(1, self.scale, dtype=torch.float32)[None, :, None, None] / self.scale
        for start in range(0, slices - 1, pairs_per_call):
            stop = min(start + pairs_per_call, slices - 1)
            low, high = max(0, start - CUBIC_CONTEXT_SLICES), min(slices, stop + 1 + CUBIC_CONTEXT_SLICES)
            stack = hu_to_unit(torch.from_numpy(np.ascontiguousarray(self.source[low:high], dtype=np.float32)))
            first, second = stack[start - low : stop - low, None], stack[start - low + 1 : stop - low + 1, None]
            mixed = linear * (first + (second - first) * fractions)
            between = cubic_between(stack, self.scale, dim=0, first_gap=start - low, gaps=stop - start)
            mixed = mixed.reshape(-1, height, width) + cubic * between
            accumulator[start * per_pair : stop * per_pair] += mixed.numpy()
            self._step(0.2 * (stop - start) * height * width, "classical interpolation")


def _view_spread(
    coronal_minus_axial: np.ndarray, sagittal_minus_axial: np.ndarray, shape: tuple, scale: int
) -> np.ndarray:
    """Standard deviation (HU) of the three views at synthesized slices; 0 at acquired slices."""
    mean = (coronal_minus_axial + sagittal_minus_axial) / 3.0
    variance = mean**2 + (coronal_minus_axial - mean) ** 2 + (sagittal_minus_axial - mean) ** 2
    variance /= 3.0
    spread = np.zeros((upsampled_length(shape[0], scale),) + tuple(shape[1:]), dtype=np.float32)
    spread[new_positions(spread.shape[0], scale).numpy()] = np.sqrt(variance) * float(HU_MAX - HU_MIN)
    return spread


def _assemble(source: np.ndarray, fused_unit: np.ndarray, scale: int) -> np.ndarray:
    """Output in the input dtype: acquired slices copied, synthesized slices converted from [0, 1] units.

    ``fused_unit`` is overwritten.
    """
    length = upsampled_length(source.shape[0], scale)
    output = np.empty((length,) + source.shape[1:], dtype=source.dtype)
    output[::scale] = source
    hu = fused_unit  # converted in place: the accumulator is not needed afterwards
    hu *= HU_MAX - HU_MIN
    hu += HU_MIN
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    if np.issubdtype(source.dtype, np.integer):
        info = np.iinfo(source.dtype)
        np.rint(hu, out=hu)
        np.clip(hu, info.min, info.max, out=hu)
    output[new_positions(length, scale).numpy()] = hu
    return output

"""PInt: the pixel-wise (coronal/sagittal) interpolator, HAN-style, that up-samples images along z only (spec §4)."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import PIntConfig
from .blocks import conv3x3, pixel_group
from .cubic_base import cubic_between


class LayerAttention(nn.Module):
    """HAN's layer attention over ``K`` stacked feature maps.

    ``K × (N, C, A, L) → (N, K·C, A, L)``: ``γ · softmax(rowmax(E) − E) G + G`` with ``E = G Gᵀ``, ``G`` the
    maps flattened per layer; ``γ`` starts at 0.

    Everything runs map by map in the maps' own memory layout (channels-last on the CPU): flattening a stack
    of channels-last maps forces strided copies that cost more than all of PInt's convolutions.
    """

    # Up to this many images, :meth:`fused_convolution` folds the attention into the next convolution's weights.
    FOLD_MAX_IMAGES = 8

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def mixing(self, layers: List[torch.Tensor]) -> torch.Tensor:
        """``M = γ · softmax(rowmax(E) − E)``, ``(N, K, K)`` float32: output map ``i`` is ``G_i + Σ_j M_ij G_j``.

        ``E_ij`` sums the products of maps ``i`` and ``j`` in float32 (products in the maps' dtype).
        """
        count = len(layers)
        energy = torch.empty(layers[0].shape[0], count, count, device=layers[0].device)
        for i in range(count):
            for j in range(i, count):
                product = (layers[i] * layers[j]).sum(dim=(1, 2, 3), dtype=torch.float32)
                energy[:, i, j] = energy[:, j, i] = product
        energy = energy.amax(dim=-1, keepdim=True) - energy
        return self.gamma.float() * torch.softmax(energy, dim=-1)

    def forward(self, layers: List[torch.Tensor]) -> torch.Tensor:
        mixing = self.mixing(layers).to(layers[0].dtype)[:, :, :, None, None, None]  # (N, K, K, 1, 1, 1)
        outputs = []
        for i, layer in enumerate(layers):
            mixed = layer
            for j, other in enumerate(layers):
                mixed = torch.addcmul(mixed, mixing[:, i, j], other)
            outputs.append(mixed)
        return torch.cat(outputs, dim=1)

    def fused_convolution(self, layers: List[torch.Tensor], conv: nn.Conv2d) -> torch.Tensor:
        """``conv(self(layers))``, ``K × (N, C, A, L) → (N, C_out, A, L)``.

        Convolution is linear, so for up to :attr:`FOLD_MAX_IMAGES` images the attention is folded into each
        image's weights instead of mixing the maps: ``W'_j = W_j + Σ_i M_ij W_i`` on the plain concatenation.
        """
        if layers[0].shape[0] > self.FOLD_MAX_IMAGES or conv.padding_mode != "zeros":
            return conv(self(layers))
        mixing = self.mixing(layers)
        stacked = torch.cat(layers, dim=1)
        count, channels = len(layers), layers[0].shape[1]
        with torch.autocast(device_type=stacked.device.type, enabled=False):  # fold the weights in float32
            weight = conv.weight.reshape(conv.out_channels, count, channels, *conv.kernel_size).float()
            folded = weight[None] + torch.einsum("nij,oicyx->nojcyx", mixing, weight)
            folded = folded.reshape(-1, *conv.weight.shape).to(stacked.dtype)
        channels_last = stacked.is_contiguous(memory_format=torch.channels_last) and not stacked.is_contiguous()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        outputs = [
            F.conv2d(stacked[n : n + 1], folded[n].contiguous(memory_format=layout), conv.bias, padding=conv.padding)
            for n in range(stacked.shape[0])
        ]
        return torch.cat(outputs)


class ChannelSpatialAttention(nn.Module):
    """HAN's CSAM: ``x + x · γ · sigmoid(Conv3d₁→₁,3×3×3(x))``, with ``γ`` starting at 0. Shape-preserving.

    The 3-D convolution over (channel, A, L) of a one-channel volume is evaluated as an exactly equivalent 2-D
    convolution (see :meth:`attention_logits`). Same parameters (27 + 1) as ``nn.Conv3d(1, 1, 3, padding=1)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, 1, 3, 3, 3))
        self.bias = nn.Parameter(torch.empty(1))
        reference = nn.Conv3d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.weight.copy_(reference.weight)
            self.bias.copy_(reference.bias)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``Conv3d(1→1, 3×3×3, padding 1)`` of ``x`` viewed as ``(N, 1, C, A, L)``, returned as ``(N, C, A, L)``.

        Output channel ``f`` gathers kernel slice ``k`` from input channel ``f + k − 1`` (zero outside
        ``[0, C)``), which is a ``C → C`` 2-D convolution with a banded weight: fast conv kernels instead of
        the slow one-channel 3-D path.
        """
        channels = x.shape[1]
        slices = self.weight.reshape(3, 3, 3)
        banded = sum(
            torch.diag(slices.new_ones(channels - abs(offset)), offset)[:, :, None, None] * slices[offset + 1]
            for offset in (-1, 0, 1)
        )
        return F.conv2d(x, banded.to(x.dtype), self.bias.expand(channels).to(x.dtype), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.attention_logits(x)) * self.gamma.to(x.dtype)
        return torch.addcmul(x, x, gate)


class PixelInterpolator(nn.Module):
    """Super-resolves 2-D images along their last axis (z) by ``r``; one set of weights for both views.

    ``(N, 1, A, L) → (N, 1, A, r(L − 1) + 1)``. Input columns pass through exactly (``out[..., ::r] == x``);
    the net predicts the ``r − 1`` columns after each input column, and those after the last one are dropped.
    With ``residual`` the prediction is a base interpolation along the last axis (``base``: "linear" or cubic
    B-spline) plus the net's correction (zero at initialisation).
    """

    def __init__(self, config: PIntConfig, scale: int, residual: bool = False, base: str = "linear") -> None:
        super().__init__()
        self.residual = residual
        self.base_kind = base
        # Layout of the activations; ``inference.precision.use_channels_last`` switches it with the weights.
        self.memory_format = torch.contiguous_format
        self.register_buffer("fractions", torch.arange(1, scale, dtype=torch.float32) / scale, persistent=False)
        width, blocks, reduction = config.width, config.blocks_per_group, config.ca_reduction
        self.scale = scale
        self.head = conv3x3(1, width)
        self.groups = nn.ModuleList(pixel_group(width, blocks, reduction) for _ in range(config.groups))
        self.body_tail = conv3x3(width, width)
        self.layer_attention = LayerAttention()
        self.layer_fuse = conv3x3(width * (config.groups + 1), width)
        self.channel_spatial_attention = ChannelSpatialAttention()
        self.fuse = conv3x3(2 * width, width)
        self.head_out = conv3x3(width, scale - 1)
        if residual:
            nn.init.zeros_(self.head_out.weight)
            nn.init.zeros_(self.head_out.bias)

    def _base(self, images: torch.Tensor) -> torch.Tensor:
        """Base values of the new columns ``(N, r − 1, A, L)``; those after the last column (cropped) repeat it."""
        if self.base_kind == "cubic":
            n, _, a, length = images.shape
            between = cubic_between(images[:, 0], self.scale, dim=-1)  # (N, A, (L − 1)(r − 1))
            between = between.reshape(n, a, length - 1, self.scale - 1).permute(0, 3, 1, 2)
            last = images[..., -1:].expand(n, self.scale - 1, a, 1)
            return torch.cat((between, last), dim=-1)
        following = torch.cat((images[..., 1:], images[..., -1:]), dim=-1)
        fractions = self.fractions.to(images.dtype)[None, :, None, None]
        return images + (following - images) * fractions

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, a, length = images.shape
        new_columns = self.new_columns(images)
        stacked = torch.cat((images.to(new_columns.dtype), new_columns), dim=1)
        interleaved = stacked.permute(0, 2, 3, 1).reshape(n, 1, a, length * self.scale)
        return interleaved[..., : (length - 1) * self.scale + 1]

    def new_values(self, images: torch.Tensor) -> torch.Tensor:
        """Only the synthesized columns of :meth:`forward`, in order along the last axis, float32:
        ``(N, 1, A, L) → (N, A, (L − 1)(r − 1))`` (``forward(images)[:, 0, :, i]`` for ``i mod r ≠ 0``), without
        interleaving the input columns back in: what whole-volume synthesis needs, with fewer copies."""
        n, _, a, length = images.shape
        new_columns = self.new_columns(images)[..., : length - 1]  # (N, r − 1, A, L − 1)
        return new_columns.permute(0, 2, 3, 1).float().reshape(n, a, (length - 1) * (self.scale - 1))

    def new_columns(self, images: torch.Tensor) -> torch.Tensor:
        """The net's ``r − 1`` columns after each input column, ``(N, 1, A, L) → (N, r − 1, A, L)``."""
        h0 = self.head(images).contiguous(memory_format=self.memory_format)  # a 1-channel input leaves it open
        features = [h0]
        for group in self.groups:
            features.append(group(features[-1]))
        tail = self.body_tail(features[-1])
        layers = [tail] + features[:0:-1]
        from_layers = self.layer_attention.fused_convolution(layers, self.layer_fuse)
        from_tail = self.channel_spatial_attention(tail)
        fused = self.fuse(torch.cat((from_tail, from_layers), dim=1)) + h0
        new_columns = self.head_out(self.channel_spatial_attention(fused))
        if self.residual:
            new_columns = new_columns.float() + self._base(images).float()  # in float32, as in SInt
        return new_columns

"""The ε-prediction UNet of the paper's Appendix D, in Flax Linen.

Three down levels (channel multipliers 2/4/8 over the base width by default), two residual blocks
in the middle, three mirrored up levels with skip connections; a sinusoidal embedding of t is added
in every residual block; GroupNorm + SiLU. No attention, so the network is fully convolutional and
runs on any H, W divisible by ``total_stride`` (Diff-SR feeds it whole target-size images).

``pixel_unshuffle`` > 1 adds an FFDNet-style lossless space-to-depth stem and a depth-to-space
head: every convolution then runs at 1/p² of the pixels, which on CPU more than halves the cost
of a step for the same widths.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from diffsr_jax.models.conv import Conv


def timestep_embedding(t: jnp.ndarray, dim: int, max_period: float = 10_000.0) -> jnp.ndarray:
    """Transformer-style sinusoidal embedding of (possibly fractional) steps, shape (B, dim)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def space_to_depth(x: jnp.ndarray, p: int) -> jnp.ndarray:
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // p, w // p, p * p * c)


def depth_to_space(x: jnp.ndarray, p: int) -> jnp.ndarray:
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, p, p, c // (p * p)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * p, w * p, c // (p * p))


def _groups(channels: int, max_groups: int) -> int:
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    out_channels: int
    norm_groups: int
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32
    conv_weight_grad: str = "xla"

    @nn.compact
    def __call__(self, x, temb, train: bool):
        conv = lambda *a, **k: Conv(*a, dtype=self.dtype, weight_grad=self.conv_weight_grad, **k)
        h = nn.GroupNorm(num_groups=_groups(x.shape[-1], self.norm_groups), dtype=self.dtype)(x)
        h = conv(self.out_channels, (3, 3))(nn.silu(h))
        h = h + nn.Dense(self.out_channels, dtype=self.dtype)(nn.silu(temb))[:, None, None, :]
        h = nn.GroupNorm(num_groups=_groups(self.out_channels, self.norm_groups), dtype=self.dtype)(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        # Zero-initialised last conv: every block starts as the identity, which trains faster.
        h = conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(h)
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, (1, 1))(x)
        return x + h


class UNet(nn.Module):
    """ε_θ(x_t, t). Inputs NHWC in [-1, 1] (noised), t int/float of shape (B,)."""

    base_channels: int = 64
    channel_mult: Sequence[int] = (2, 4, 8)
    num_res_blocks: int = 2
    num_middle_blocks: int = 2
    pixel_unshuffle: int = 1
    norm_groups: int = 32
    dropout: float = 0.0
    out_channels: int = 3
    dtype: jnp.dtype = jnp.float32  # compute dtype (bf16 on accelerators); params stay float32
    # How convolution weight gradients are computed ("xla" or "gemm", see models/conv.py). Not a
    # hyperparameter: it changes the speed of training, not the function or its params.
    conv_weight_grad: str = "xla"

    @property
    def total_stride(self) -> int:
        return self.pixel_unshuffle * 2 ** (len(self.channel_mult) - 1)

    @nn.compact
    def __call__(self, x, t, train: bool = False):
        p = self.pixel_unshuffle
        if x.shape[1] % self.total_stride or x.shape[2] % self.total_stride:
            raise ValueError(f"H, W = {x.shape[1:3]} must be divisible by the UNet's stride {self.total_stride}")
        in_dtype = x.dtype
        x = x.astype(self.dtype)
        conv = lambda *a, **k: Conv(*a, dtype=self.dtype, weight_grad=self.conv_weight_grad, **k)
        temb_dim = 4 * self.base_channels
        temb = timestep_embedding(t, self.base_channels)
        temb = nn.Dense(temb_dim, dtype=self.dtype)(temb)
        temb = nn.Dense(temb_dim, dtype=self.dtype)(nn.silu(temb))

        if p > 1:
            x = space_to_depth(x, p)
        h = conv(self.base_channels, (3, 3))(x)
        skips = [h]
        block = lambda ch: ResBlock(ch, self.norm_groups, self.dropout, self.dtype, self.conv_weight_grad)
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                h = block(self.base_channels * mult)(h, temb, train)
                skips.append(h)
            if level != len(self.channel_mult) - 1:
                h = conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
                skips.append(h)

        for _ in range(self.num_middle_blocks):
            h = block(h.shape[-1])(h, temb, train)

        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = block(self.base_channels * mult)(jnp.concatenate([h, skips.pop()], axis=-1), temb, train)
            if level != 0:
                h = conv(h.shape[-1], (3, 3), upsample=2)(h)  # nearest ×2, then conv (sub-pixel form)
        assert not skips

        h = nn.silu(nn.GroupNorm(num_groups=_groups(h.shape[-1], self.norm_groups), dtype=self.dtype)(h))
        h = conv(self.out_channels * p * p, (3, 3), kernel_init=nn.initializers.zeros)(h)
        if p > 1:
            h = depth_to_space(h, p)
        return h.astype(in_dtype)

"""A drop-in for ``flax.linen.Conv`` (NHWC, "SAME" padding) whose weight gradient can be one GEMM.

Why: on XLA's CPU backend the weight gradient of a 3×3 convolution is lowered to a convolution
with the batch folded into the reduction, and for some shapes that kernel is pathological — in the
CPU config's train step the 64→64 upsampling conv at 32×32 alone took ~0.5 s of a ~1.9 s step
(≈4 GFLOP/s). With ``weight_grad="gemm"`` the backward pass instead builds the im2col matrix of the
input (the 9 shifted copies stacked, channels first) and computes dW = colsᵀ·g as a single
large-K matrix product, which XLA hands to its tuned GEMM. (Variants that copy less — 9 GEMMs on
shifted views, or 3 on row-shifted blocks — measured the same here: XLA copies the views anyway.) The forward pass and the input gradient stay XLA
convolutions (they are fast), so inference is unchanged bit for bit and the gradient is the same
function up to float rounding. On GPUs cuDNN's weight gradient is better: keep ``"xla"`` there.

The module is named ``Conv`` and creates the same ``kernel``/``bias`` params as ``nn.Conv``, so
Flax auto-names it ``Conv_<n>`` exactly like ``nn.Conv``: checkpoints load into either.

``Conv(..., upsample=2)`` is "nearest ×2 upsampling, then this 3×3 conv" (the UNet's up path)
computed at the input's resolution: each of the four output phases sees only a 2×2 window of the
input, with the 3×3 kernel's taps summed onto it (``subpixel_kernels``). Same params, same function
up to float rounding, but 16 instead of 36 multiply-adds per input pixel and channel pair, and no
4×-sized upsampled tensor to build and to differentiate through.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")
WEIGHT_GRADS = ("xla", "gemm")


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TF/XLA "SAME" padding of one axis (the extra pixel of an odd total goes to the end)."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _conv(x, kernel, strides, padding="SAME"):
    """``padding``: "SAME" or explicit ((top, bottom), (left, right)) pixel counts."""
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_gemm_weight_grad(x: jnp.ndarray, kernel: jnp.ndarray, strides: tuple[int, int],
                          padding="SAME") -> jnp.ndarray:
    """``lax`` convolution whose kernel cotangent is computed as one im2col GEMM."""
    return _conv(x, kernel, strides, padding)


def _fwd(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def im2col_t(x: jnp.ndarray, kernel_hw: tuple[int, int], strides: tuple[int, int],
             out_hw: tuple[int, int], padding="SAME") -> jnp.ndarray:
    """im2col's transpose, (kh·kw·C, B·Ho·Wo), built channels-first: one transpose of x, then
    the shifted windows are stacked along the major axis (contiguous copies), and the result is
    already the (M, K) operand of a GEMM, so XLA does not transpose the large matrix again."""
    (kh, kw), (sh, sw), (ho, wo) = kernel_hw, strides, out_hw
    if padding == "SAME":
        padding = (_same_pads(x.shape[1], kh, sh), _same_pads(x.shape[2], kw, sw))
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    xp = jnp.transpose(xp, (3, 0, 1, 2))  # (C, B, Hp, Wp)
    cols = jnp.concatenate([xp[:, :, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw]
                            for i in range(kh) for j in range(kw)], axis=0)
    return cols.reshape(cols.shape[0], -1)


def _bwd(strides, padding, residuals, g):
    x, kernel = residuals
    dx = jax.vjp(lambda x_: _conv(x_, kernel, strides, padding), x)[1](g)[0]
    kh, kw, cin, cout = kernel.shape
    cols_t = im2col_t(x, (kh, kw), strides, g.shape[1:3], padding)
    dk = jnp.dot(cols_t, g.reshape(-1, cout), preferred_element_type=jnp.float32)
    return dx, dk.reshape(kh, kw, cin, cout).astype(kernel.dtype)


conv_gemm_weight_grad.defvjp(_fwd, _bwd)

# _TAP_TO_WINDOW[a, r, w] = 1 when, for output phase a (even/odd output row), tap r of a 3×3 kernel
# applied to the nearest-×2-upsampled input lands on row w of the 2-row input window: phase 0 reads
# input rows i-1 (tap 0) and i (taps 1, 2); phase 1 reads rows i (taps 0, 1) and i+1 (tap 2).
_TAP_TO_WINDOW = np.array([[[1, 0], [0, 1], [0, 1]],
                           [[1, 0], [1, 0], [0, 1]]], np.float32)


def subpixel_kernels(kernel: jnp.ndarray) -> jnp.ndarray:
    """(3, 3, C, O) kernel → (2, 2, 2, 2, C, O) [phase_row, phase_col, win_row, win_col, C, O]."""
    return jnp.einsum("arw,bsv,rsco->abwvco", _TAP_TO_WINDOW, _TAP_TO_WINDOW, kernel.astype(jnp.float32),
                      precision=lax.Precision.HIGHEST).astype(kernel.dtype)


def upsample2_conv3x3(x: jnp.ndarray, kernel: jnp.ndarray, conv=conv_gemm_weight_grad) -> jnp.ndarray:
    """``SAME`` 3×3 conv of the nearest-×2 upsampled x, as four 2×2 convs of x (one per output
    phase), interleaved. ``conv(x, kernel, strides, padding)`` is the convolution to use."""
    b, h, w, _ = x.shape
    kernels = subpixel_kernels(kernel)
    # Phase (a, c)'s window starts one row/column above-left for a/c = 0 and at the pixel for 1:
    # zero padding of one pixel on the window's far side keeps the output at h × w.
    phases = [[conv(x, kernels[a, c], (1, 1), ((1 - a, a), (1 - c, c))) for c in (0, 1)] for a in (0, 1)]
    y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=3)  # (B, H, W, a, c, O)
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, kernel.shape[-1])


class Conv(nn.Module):
    """2-D convolution, NHWC, "SAME" padding, with bias; params identical to ``nn.Conv``'s."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
    bias_init: Callable[..., Any] = nn.initializers.zeros
    dtype: Any = jnp.float32  # compute dtype; params stay float32
    weight_grad: str = "xla"  # "xla" | "gemm" (see the module docstring)
    upsample: int = 1  # 2: nearest ×2 upsampling before the conv, computed at x's resolution

    @nn.compact
    def __call__(self, x):
        if self.weight_grad not in WEIGHT_GRADS:
            raise ValueError(f"weight_grad must be one of {WEIGHT_GRADS}, got {self.weight_grad!r}")
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
        strides = tuple(int(s) for s in self.strides)
        conv = conv_gemm_weight_grad if self.weight_grad == "gemm" else _conv
        if self.upsample == 2:
            if (kh, kw) != (3, 3) or strides != (1, 1):
                raise ValueError(f"upsample=2 needs a 3×3 kernel with stride 1, got {(kh, kw)}, {strides}")
            return upsample2_conv3x3(x, kernel, conv) + bias
        if self.upsample != 1:
            raise ValueError(f"upsample must be 1 or 2, got {self.upsample!r}")
        return conv(x, kernel, strides) + bias

"""Data consistency at any real scale, and a colour (low-frequency) fix. Training-free.

The degradation is the one the pipeline assumes: A = antialiased bicubic downscale from the HR
size to the LR size (identical to PIL's bicubic ``resize`` on float images). ``jax.image.resize``
is separable, so A acts as a pair of small matrices, A x = D_h x D_wᵀ (D_h: lr_h × H), for *any*
real scale — not just the integer / power-of-2 factors ILVR, DDRM and DDNM support. With a lift
L (H × lr_h per axis) the reverse process corrects its predicted clean image at every step:

    x0 ← x0 + λ · (L y − L A x0)            (repeated ``iters`` times)

Two lifts are offered:
- ``"pinv"``: L = A⁺ (Moore–Penrose pseudo-inverse, per axis). L A is the orthogonal projector
  onto A's row space, so one step with λ = 1 gives A(x0) = y exactly (range/null-space
  decomposition as in DDNM, here for any scale).
- ``"bicubic"``: L = the bicubic upscale U (iterated back-projection, Irani & Peleg): gentler,
  converges towards A(x0) = y over iterations.

Everything is expressed with per-axis matrices that the host builds once per shape and scale, so
inside jit the scale is *data*: one compiled program serves every scale (the PRF sweep vmaps over
them), and tiles of a large image use the rows/columns of the global operator that fall in the
tile (see :func:`tile_operator`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from diffsr_jax.defaults import COLOUR_FIXES, LIFTS  # noqa: F401  (re-exported)


class AxisOperator(NamedTuple):
    """One axis of the separable operator: ``down`` (lr × n) is A's factor, ``lift`` (n × lr)."""
    down: np.ndarray
    lift: np.ndarray

    @property
    def projector(self) -> np.ndarray:
        """lift @ down (n × n): what a consistency step subtracts."""
        return self.lift @ self.down


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out × n_in) matrix of jax's antialiased bicubic 1-D resize (resize is linear)."""
    with jax.ensure_compile_time_eval():  # a constant even when called while tracing
        eye = jnp.eye(n_in, dtype=jnp.float32)
        return np.asarray(jax.image.resize(eye, (n_out, n_in), method="bicubic", antialias=True), np.float64)


def _pad_rows(m: np.ndarray, n_padded: int) -> np.ndarray:
    """Extends rows the way pipeline.pad_to_multiple pads images (reflect, or edge if too short)."""
    extra = n_padded - m.shape[0]
    if extra <= 0:
        return m
    mode = "reflect" if extra < m.shape[0] else "edge"
    return np.pad(m, ((0, extra), (0, 0)), mode=mode)


def axis_operator(hr: int, lr: int, lift: str = "pinv", padded: Optional[int] = None) -> AxisOperator:
    """Operator for one axis: HR length ``hr`` (the valid part of a ``padded`` array) → ``lr``.

    Padded positions (added so the UNet's stride divides the size) are not seen by A, and the
    lift fills them as the image padding does, so the padded image stays a plausible extension.
    """
    if lift not in LIFTS:
        raise ValueError(f"lift must be one of {', '.join(LIFTS)}, got {lift!r}")
    if lr < 1 or hr < 1 or lr > hr:
        raise ValueError(f"need 1 ≤ lr ≤ hr, got lr={lr}, hr={hr}")
    padded = hr if padded is None else int(padded)
    down = resize_matrix(hr, lr)
    up = np.linalg.pinv(down) if lift == "pinv" else resize_matrix(lr, hr)
    down_p = np.zeros((lr, padded))
    down_p[:, :hr] = down
    return AxisOperator(down=down_p, lift=_pad_rows(up, padded))


def image_operator(hr_hw, lr_hw, lift: str = "pinv", padded_hw=None) -> tuple[AxisOperator, AxisOperator]:
    padded_hw = hr_hw if padded_hw is None else padded_hw
    return (axis_operator(int(hr_hw[0]), int(lr_hw[0]), lift, int(padded_hw[0])),
            axis_operator(int(hr_hw[1]), int(lr_hw[1]), lift, int(padded_hw[1])))


def _apply(m: jnp.ndarray, x: jnp.ndarray, axis: str) -> jnp.ndarray:
    """m (…, out, in) applied to the rows (axis="h") or columns (axis="w") of an NHWC batch;
    a leading batch dimension on m pairs matrices with images."""
    batched = m.ndim == 3
    if axis == "h":
        return jnp.einsum("bij,bjwc->biwc" if batched else "ij,bjwc->biwc", m, x)
    return jnp.einsum("bij,bhjc->bhic" if batched else "ij,bhjc->bhic", m, x)


def separable(rows: jnp.ndarray, cols: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """rows · x · colsᵀ for an NHWC batch (matrices shared, or one per image)."""
    return _apply(cols, _apply(rows, x, "h"), "w")


def degrade(ops: tuple[AxisOperator, AxisOperator], x: jnp.ndarray) -> jnp.ndarray:
    """A x for an NHWC batch."""
    return separable(jnp.asarray(ops[0].down, x.dtype), jnp.asarray(ops[1].down, x.dtype), x)


def lift(ops: tuple[AxisOperator, AxisOperator], y: jnp.ndarray) -> jnp.ndarray:
    """L y: the reference every consistency step pulls towards."""
    return separable(jnp.asarray(ops[0].lift, y.dtype), jnp.asarray(ops[1].lift, y.dtype), y)


def correct(x0: jnp.ndarray, ref: jnp.ndarray, proj_rows: jnp.ndarray, proj_cols: jnp.ndarray,
            strength, iters: int = 1) -> jnp.ndarray:
    """x0 ← x0 + λ (ref − P x0), ``iters`` times, with P = proj_rows ⊗ proj_cols. Pure; any batch.

    ``strength`` (λ) may be traced (0 turns the correction off without recompiling).
    """
    lam = jnp.asarray(strength, x0.dtype)
    if lam.ndim == 1:
        lam = lam[:, None, None, None]
    for _ in range(int(iters)):
        x0 = x0 + lam * (ref - separable(proj_rows, proj_cols, x0))
    return x0


def x0_corrector(ref: jnp.ndarray, proj_rows: jnp.ndarray, proj_cols: jnp.ndarray, strength, iters: int = 1):
    """The ``correct_x0(x0, t)`` hook of the samplers (same correction at every step)."""
    return lambda x0, t: correct(x0, ref, proj_rows, proj_cols, strength, iters)


def project_onto_lr(x: jnp.ndarray, y: jnp.ndarray, ops: tuple[AxisOperator, AxisOperator],
                    strength=1.0, iters: int = 1) -> jnp.ndarray:
    """x ← x + λ L (y − A x): the same correction in factored form (cheap for large images)."""
    f = lambda m: jnp.asarray(m, x.dtype)
    for _ in range(int(iters)):
        r = y - separable(f(ops[0].down), f(ops[1].down), x)
        x = x + jnp.asarray(strength, x.dtype) * separable(f(ops[0].lift), f(ops[1].lift), r)
    return x


def tile_operator(projectors: tuple[np.ndarray, np.ndarray], y0: int, x0: int, th: int, tw: int):
    """(P_rows, P_cols) for the tile [y0:y0+th, x0:x0+tw] of an image whose global projectors
    (``AxisOperator.projector`` of each axis, computed once per image) are ``projectors``.

    The tile sees only its own pixels, so each row of the global projector is cut to the tile
    and rescaled to keep its original sum (a flat region stays flat at tile borders); the blend
    over overlaps and a final global projection (``project_onto_lr``) take care of the rest.
    """
    def cut(proj: np.ndarray, start: int, n: int) -> np.ndarray:
        p = proj[start:start + n]
        sub = p[:, start:start + n]
        full_sum, sub_sum = p.sum(1, keepdims=True), sub.sum(1, keepdims=True)
        scale = np.where(np.abs(sub_sum) > 0.5 * np.abs(full_sum), full_sum / np.where(sub_sum == 0, 1, sub_sum), 1.0)
        return (sub * scale).astype(np.float32)

    return cut(projectors[0], y0, th), cut(projectors[1], x0, tw)


# ---------------------------------------------------------------------------------------------
# Colour / low-frequency fixes: keep the output's colours those of the (upsampled) input.


def _blur(x: jnp.ndarray, dilation: int) -> jnp.ndarray:
    """À-trous 3×3 binomial blur of an NHWC batch. Half-sample symmetric padding makes each 1-D
    pass doubly stochastic (while dilation ≤ length), so the image mean is preserved exactly."""
    k = (0.25, 0.5, 0.25)
    for axis in (1, 2):
        n = x.shape[axis]
        d = min(int(dilation), n)
        pad = [(0, 0)] * 4
        pad[axis] = (d, d)
        xp = jnp.pad(x, pad, mode="symmetric")
        sl = lambda s: jax.lax.slice_in_dim(xp, s, s + n, axis=axis)
        x = k[0] * sl(0) + k[1] * sl(d) + k[2] * sl(2 * d)
    return x


def wavelet_lowpass(x: jnp.ndarray, levels: int = 5) -> jnp.ndarray:
    for i in range(levels):
        x = _blur(x, 2 ** i)
    return x


def wavelet_colour_fix(out: jnp.ndarray, ref: jnp.ndarray, levels: int = 5) -> jnp.ndarray:
    """StableSR-style: the output's high-frequency wavelet bands + the reference's lowest band."""
    return out - wavelet_lowpass(out, levels) + wavelet_lowpass(ref, levels)


def adain_colour_fix(out: jnp.ndarray, ref: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
    """Per-image, per-channel mean and standard deviation of the output set to the reference's."""
    m_o, m_r = out.mean((1, 2), keepdims=True), ref.mean((1, 2), keepdims=True)
    s_o, s_r = out.std((1, 2), keepdims=True), ref.std((1, 2), keepdims=True)
    return (out - m_o) / (s_o + eps) * s_r + m_r


def colour_fix(out: jnp.ndarray, ref: jnp.ndarray, method: str = "wavelet") -> jnp.ndarray:
    if method == "none":
        return out
    if method == "wavelet":
        return wavelet_colour_fix(out, ref)
    if method == "adain":
        return adain_colour_fix(out, ref)
    raise ValueError(f"colour fix must be one of {', '.join(COLOUR_FIXES)}, got {method!r}")

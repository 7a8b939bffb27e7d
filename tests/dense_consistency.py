"""The dense consistency operators (n × n projectors, an O(n³) pseudo-inverse): the reference the
library's banded operators (diffsr_jax.consistency) are tested against, small sizes only."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

LIFTS = ("pinv", "bicubic")


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

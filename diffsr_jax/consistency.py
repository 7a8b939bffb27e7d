"""Data consistency at any real scale, and a colour (low-frequency) fix. Training-free.

The degradation is the one the pipeline assumes: A = antialiased bicubic downscale from the HR
size to the LR size (``jax.image.resize``; identical to PIL's bicubic ``resize`` on floats). The
resize is separable, so A acts as a pair of per-axis matrices, A x = D_h x D_wᵀ (D_h: lr_h × H),
for *any* real scale — not just the integer / power-of-2 factors ILVR, DDRM and DDNM support.
With a lift L (H × lr_h per axis) the reverse process corrects its predicted clean image at
every step:

    x0 ← x0 + λ · (L y − P x0),   P = L A            (repeated ``iters`` times)

Two lifts are offered:
- ``"pinv"``: L = A⁺ = Dᵀ (D Dᵀ)⁻¹ per axis. P is the orthogonal projector onto A's row space,
  so one step with λ = 1 gives A(x0) = y exactly (range/null-space decomposition as in DDNM,
  here for any scale).
- ``"bicubic"``: L = the bicubic upscale U (iterated back-projection, Irani & Peleg): gentler,
  converges towards A(x0) = y over iterations.

Everything is O(pixels) in time and memory; nothing n × n is ever formed:
- D and U are sparse (the antialiased Keys kernel has about 4·max(1, n/lr) taps per row), held as
  scipy CSR matrices built from jax's kernel formula.
- D Dᵀ is banded (half-bandwidth ≤ 3) and well conditioned, so (D Dᵀ)⁻¹ and P decay
  exponentially away from the diagonal. P is kept as its diagonals, ``diags[i, K + d] =
  P[i, i + d]`` (K ≈ 14·scale for the pinv lift with entries below ``TOL``·max|P| dropped;
  exactly banded for the bicubic lift), found by *probing*: P applied (sparse D, one banded
  Cholesky solve, sparse Dᵀ) to 2K+1 comb vectors recovers every diagonal.
- The reference L y and the final factored projection x + λ L (y − D x) run on the host in
  float64 (sparse products, banded solves).

Inside jit the operator is *data*: a band (n, 2K+1) per axis, or one per image (B, n, 2K+1), so
one compiled program serves every scale whose band has the same width (:func:`band_width`
rounds K up, so nearby scales share a program), and tiles of a large image use the rows of the
global band that fall in the tile (:func:`tile_operator`).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from diffsr_jax.defaults import COLOUR_FIXES, LIFTS  # noqa: F401  (re-exported)

TOL = 1e-7          # diagonals whose entries are all below TOL · max|P| are dropped
MAX_BAND = 4096     # cap on K (the pinv lift needs K ≈ 14·scale: reached near 290×)


def resize_rows(n_in: int, n_out: int) -> sp.csr_matrix:
    """The (n_out × n_in) matrix of ``jax.image.resize(..., "bicubic", antialias=True)`` along one
    axis, sparse, from jax's kernel formula evaluated in float32 like jax (x64 off) does."""
    if n_in == n_out:
        return sp.identity(n_in, format="csr")
    f32 = np.float32
    inv_scale = f32(1.0 / (n_out / n_in))   # float32 arithmetic, step by step as jax does it
    ks = np.maximum(inv_scale, f32(1.0))    # the kernel is widened when downscaling (antialias)
    sample = (np.arange(n_out, dtype=f32) + f32(0.5)) * inv_scale - f32(0.5)
    width = int(np.ceil(4 * float(ks))) + 2
    start = np.floor(sample.astype(np.float64) - 2 * float(ks)).astype(np.int64)
    j = start[:, None] + np.arange(width)[None]
    x = np.abs(sample[:, None] - j.astype(f32)) / ks
    near = ((f32(1.5) * x - f32(2.5)) * x) * x + f32(1.0)              # Keys, a = -0.5
    far = ((f32(-0.5) * x + f32(2.5)) * x - f32(4.0)) * x + f32(2.0)
    w = np.where((x >= 2) | (j < 0) | (j >= n_in), f32(0), np.where(x >= 1, far, near))
    total = w.sum(1, keepdims=True, dtype=f32)
    w = np.where(np.abs(total) > 1000 * np.finfo(f32).eps, w / np.where(total == 0, f32(1), total), f32(0))
    w = np.where(((sample >= -0.5) & (sample <= n_in - 0.5))[:, None], w, f32(0)).astype(np.float64)
    keep = w != 0
    rows = np.broadcast_to(np.arange(n_out)[:, None], w.shape)
    return sp.csr_matrix((w[keep], (rows[keep], j[keep])), shape=(n_out, n_in))


def _reflected_rows(hr: int, padded: int) -> tuple[np.ndarray, str]:
    """Source row of every padded position, as ``pipeline.pad_to_multiple`` pads an image
    (np.pad reflect; edge when the padding is not shorter than the axis)."""
    extra = padded - hr
    mode = "reflect" if extra < hr else "edge"
    return (np.pad(np.arange(hr), (0, max(extra, 0)), mode=mode) if extra > 0 else np.arange(hr)), mode


class AxisOperator(NamedTuple):
    """One axis of the operator: ``diags`` (padded, 2K+1) = the projector P = L D as a band;
    ``down`` = D (lr × hr, CSR, valid columns only); ``up`` = U (hr × lr, CSR) for the bicubic
    lift, else None; ``chol`` = the banded Cholesky factor of D Dᵀ (scipy upper form) for the pinv
    lift, else None."""
    diags: np.ndarray
    down: sp.csr_matrix
    up: Optional[sp.csr_matrix]
    chol: Optional[np.ndarray]
    hr: int
    lr: int
    padded: int
    pad_mode: str

    @property
    def K(self) -> int:
        return (self.diags.shape[-1] - 1) // 2

    def lift_valid(self, z: np.ndarray) -> np.ndarray:
        """L z for z (lr, m) → (hr, m), host float64, O(hr·m): Dᵀ (D Dᵀ)⁻¹ z or U z."""
        if self.up is not None:
            return self.up @ z
        return self.down.T @ sla.cho_solve_banded((self.chol, False), z)


def _gram_upper(down: sp.csr_matrix) -> np.ndarray:
    """D Dᵀ (banded, symmetric) in the upper form of scipy's *_banded solvers."""
    g = (down @ down.T).tocoo()
    u = int(np.max(np.abs(g.col - g.row))) if g.nnz else 0
    ab = np.zeros((u + 1, down.shape[0]))
    up = g.col >= g.row
    ab[u + g.row[up] - g.col[up], g.col[up]] = g.data[up]
    return ab


def _diags_from_columns(cols: np.ndarray, period: int, K: int) -> np.ndarray:
    """The band of P from PX, X the comb of ``period`` colours (X[b, b % period] = 1)."""
    n = cols.shape[0]
    i = np.arange(n)[:, None]
    c = i + np.arange(-K, K + 1)[None]
    valid = (c >= 0) & (c < n)
    return np.where(valid, cols[i, np.mod(c, period)], 0.0)


def _trim(diags: np.ndarray, tol: float) -> np.ndarray:
    """Drops outer diagonal pairs whose entries are all below tol · max|P|."""
    K = (diags.shape[1] - 1) // 2
    big = np.abs(diags).max(0) >= tol * np.abs(diags).max()
    keep = int(np.max(np.abs(np.nonzero(big)[0] - K))) if big.any() else 0
    return diags[:, K - keep:K + keep + 1]


def _pinv_band(down: sp.csr_matrix, chol: np.ndarray, tol: float, max_band: int) -> np.ndarray:
    n = down.shape[1]
    apply_p = lambda x: down.T @ sla.cho_solve_banded((chol, False), (down @ x).toarray())  # P x, x sparse
    # K from exact columns at both ends and over two periods in the middle (the decay is uniform)
    c = min(n, int(np.ceil(2 * n / down.shape[0])) + 4)
    sample = np.unique(np.r_[np.arange(c), n - 1 - np.arange(c), n // 2 - c + np.arange(2 * c)].clip(0, n - 1))
    cols = apply_p(sp.csr_matrix((np.ones(len(sample)), (sample, np.arange(len(sample)))), shape=(n, len(sample))))
    r, k = np.nonzero(np.abs(cols) >= tol * np.abs(cols).max())
    K = min(int(np.max(np.abs(r - sample[k]))) + 2, n - 1)
    while True:
        if K > max_band:
            warnings.warn(f"projector band {K} capped at {max_band}: entries above tol are dropped", stacklevel=3)
            K = max_band
        period = min(n, 2 * K + 1 + max(4, K // 2))  # a margin: neighbouring columns' tails stay < tol
        comb = sp.csr_matrix((np.ones(n), (np.arange(n), np.arange(n) % period)), shape=(n, period))
        diags = _diags_from_columns(apply_p(comb), period, K)
        edge = np.abs(diags[:, [0, -1]]).max()
        if K >= min(n - 1, max_band) or edge < tol * np.abs(diags).max():
            return diags
        K = min(2 * K, n - 1)  # not decayed at the band's edge (not seen so far): widen


def _sparse_band(m: sp.spmatrix) -> np.ndarray:
    """The diagonals of an exactly banded sparse n × n matrix."""
    m = m.tocoo()
    K = int(np.max(np.abs(m.col - m.row))) if m.nnz else 0
    diags = np.zeros((m.shape[0], 2 * K + 1))
    np.add.at(diags, (m.row, K + m.col - m.row), m.data)
    return diags


def _pad_band(diags: np.ndarray, hr: int, padded: int) -> tuple[np.ndarray, str]:
    """Rows for padded positions = the reflected (or edge) row's entries; their columns stay in
    [0, hr), so K grows by the largest |padded row − source row| (≤ 2 × the padding)."""
    src, mode = _reflected_rows(hr, padded)
    K = (diags.shape[1] - 1) // 2
    shift = np.arange(padded) - src               # offset of each row's entries, ≥ 0
    Kp = K + int(shift.max(initial=0))
    out = np.zeros((padded, 2 * Kp + 1))
    cols = Kp - K - shift[:, None] + np.arange(2 * K + 1)[None]
    out[np.arange(padded)[:, None], cols] = diags[src]
    return out, mode


def area_rows(n_in: int, n_out: int) -> sp.csr_matrix:
    """The (n_out × n_in) matrix of an area (box) downscale: each output sample is the mean of
    the input over its footprint, partial pixels weighted by their overlap (PIL's BOX filter)."""
    scale = n_in / n_out
    rows, cols, vals = [], [], []
    for i in range(n_out):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(np.floor(a)), min(int(np.ceil(b)), n_in)):
            w = min(b, j + 1) - max(a, j)
            if w > 1e-12:
                rows.append(i), cols.append(j), vals.append(w / scale)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))


def gaussian_rows(n: int, sigma: float) -> sp.csr_matrix:
    """(n × n) Gaussian blur of std ``sigma`` pixels, edges reflected (half-sample symmetric)."""
    if sigma <= 0:
        return sp.identity(n, format="csr")
    r = int(np.ceil(4 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    src = np.arange(n)[:, None] + np.arange(-r, r + 1)[None]
    src = np.where(src < 0, -src - 1, np.where(src >= n, 2 * n - src - 1, src)).clip(0, n - 1)
    m = sp.csr_matrix((np.broadcast_to(k, src.shape).ravel(), (np.repeat(np.arange(n), 2 * r + 1), src.ravel())),
                      shape=(n, n))
    m.sum_duplicates()
    return m


KERNELS = ("bicubic", "area", "gaussian")


def downscale_rows(hr: int, lr: int, kernel: str = "bicubic", blur: float = 0.0) -> sp.csr_matrix:
    """D for one axis: the antialiased bicubic resize (``kernel="bicubic"``), an area average
    ("area"), or a Gaussian blur of ``blur`` LR pixels followed by the bicubic resize ("gaussian")."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "area":
        return area_rows(hr, lr)
    down = resize_rows(hr, lr)
    if kernel == "gaussian" and blur > 0:
        down = (down @ gaussian_rows(hr, blur * hr / lr)).tocsr()
    return down


def axis_operator(hr: int, lr: int, lift: str = "pinv", padded: Optional[int] = None, *,
                  kernel: str = "bicubic", blur: float = 0.0, tol: float = TOL,
                  max_band: int = MAX_BAND) -> AxisOperator:
    """Operator for one axis: HR length ``hr`` (the valid part of a ``padded`` array) → ``lr``.

    Padded positions (added so the UNet's stride divides the size) are not seen by A, and their
    rows of P repeat the reflected row's (as the image padding does), so the padded image stays a
    plausible extension. O(padded · K) time and memory."""
    if lift not in LIFTS:
        raise ValueError(f"lift must be one of {', '.join(LIFTS)}, got {lift!r}")
    if lr < 1 or hr < 1 or lr > hr:
        raise ValueError(f"need 1 ≤ lr ≤ hr, got lr={lr}, hr={hr}")
    padded = hr if padded is None else int(padded)
    if padded < hr:
        raise ValueError(f"padded ({padded}) must be ≥ hr ({hr})")
    down = downscale_rows(hr, lr, kernel, blur)
    up = chol = None
    if lift == "bicubic":
        up = resize_rows(lr, hr)
        diags = _sparse_band(up @ down)
    else:
        chol = sla.cholesky_banded(_gram_upper(down), lower=False)
        diags = _pinv_band(down, chol, tol, max_band)
    diags, mode = _pad_band(_trim(diags, tol), hr, padded)
    return AxisOperator(diags=diags, down=down, up=up, chol=chol, hr=hr, lr=lr, padded=padded, pad_mode=mode)


def image_operator(hr_hw, lr_hw, lift: str = "pinv", padded_hw=None, **kw) -> tuple[AxisOperator, AxisOperator]:
    """Both axes (rows, columns) of the image operator HR (hr_hw, inside padded_hw) → LR lr_hw."""
    padded_hw = hr_hw if padded_hw is None else padded_hw
    return tuple(axis_operator(int(hr_hw[a]), int(lr_hw[a]), lift, int(padded_hw[a]), **kw) for a in (0, 1))


def widen(diags, K: int):
    """Zero-pads the band to half-width K (to stack operators of different K, e.g. per scale)."""
    k0 = (diags.shape[-1] - 1) // 2
    if K < k0:
        raise ValueError(f"cannot narrow a band of K={k0} to {K}")
    pad = [(0, 0)] * (diags.ndim - 1) + [(K - k0, K - k0)]
    return jnp.pad(diags, pad) if isinstance(diags, jnp.ndarray) else np.pad(diags, pad)


def band_width(K: int) -> int:
    """K rounded up to a multiple of 16: bands of nearby scales then share one width (and one
    compiled program); the extra diagonals are zeros."""
    return -(-int(K) // 16) * 16 if K > 0 else 0


def guide_bands(ops: tuple[AxisOperator, AxisOperator]) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, cols) float32 bands of an image operator, widened to :func:`band_width`."""
    return tuple(np.asarray(widen(op.diags, band_width(op.K)), np.float32) for op in ops)


def stack_bands(bands) -> tuple[np.ndarray, np.ndarray]:
    """:func:`guide_bands` of several operators of one image size (e.g. one per scale or per image)
    stacked: (rows (B, H, 2K+1), cols (B, W, 2K'+1)) float32, each axis widened to its widest K."""
    def stack(axis):
        K = max((b[axis].shape[-1] - 1) // 2 for b in bands)
        return np.stack([widen(b[axis], K) for b in bands]).astype(np.float32)
    return stack(0), stack(1)


def to_dense(diags: np.ndarray) -> np.ndarray:
    """The n × n matrix of a band (tests and small sizes only)."""
    n, K = diags.shape[0], (diags.shape[1] - 1) // 2
    i = np.arange(n)[:, None]
    c = i + np.arange(-K, K + 1)[None]
    m = np.zeros((n, n + 2 * K))
    m[i, c + K] = diags
    return m[:, K:K + n]


# ---------------------------------------------------------------------------------------------
# Host (numpy, float64): reference, degradation and the final factored projection, O(pixels).

def _along(f, x: np.ndarray, axis: int) -> np.ndarray:
    """f applied to the 2-D (length, rest) view of x along ``axis``."""
    x = np.moveaxis(x, axis, 0)
    out = f(x.reshape(x.shape[0], -1))
    return np.moveaxis(np.asarray(out).reshape(out.shape[0], *x.shape[1:]), 0, axis)


def degrade(ops: tuple[AxisOperator, AxisOperator], x) -> np.ndarray:
    """D x for an NHWC batch (valid or padded size: padded positions are not seen, as in the
    dense operator's zero columns): the antialiased bicubic downscale, float64."""
    x = np.asarray(x, np.float64)[:, :ops[0].hr, :ops[1].hr]
    return _along(lambda v: ops[1].down @ v, _along(lambda v: ops[0].down @ v, x, 1), 2)


def _lift_padded(ops, y) -> np.ndarray:
    """L y in float64, padded rows/columns filled from the valid ones like the dense lift's rows."""
    out = _along(ops[1].lift_valid, _along(ops[0].lift_valid, np.asarray(y, np.float64), 1), 2)
    for a, op in ((1, ops[0]), (2, ops[1])):
        if op.padded > op.hr:
            pad = [(0, 0)] * 4
            pad[a] = (0, op.padded - op.hr)
            out = np.pad(out, pad, mode=op.pad_mode)
    return out


def lift(ops: tuple[AxisOperator, AxisOperator], y) -> np.ndarray:
    """L y → (N, padded_h, padded_w, C) float32: the reference every consistency step pulls towards."""
    return _lift_padded(ops, y).astype(np.float32)


def project_onto_lr(x, y, ops: tuple[AxisOperator, AxisOperator], strength=1.0, iters: int = 1) -> jnp.ndarray:
    """x ← x + λ L (y − D x) on the host in float64, O(pixels); x of the operator's padded size.
    λ = 1 with the pinv lift gives D x = y (to float rounding) in one step."""
    dtype = getattr(x, "dtype", np.float32)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    for _ in range(int(iters)):
        x = x + float(strength) * _lift_padded(ops, y - degrade(ops, x))
    return jnp.asarray(x.astype(dtype))


# ---------------------------------------------------------------------------------------------
# Traced (jax.numpy): the projector applied inside the sampler.

def apply_band(diags: jnp.ndarray, x: jnp.ndarray, axis: str) -> jnp.ndarray:
    """P x along the rows (axis="h") or columns ("w") of an NHWC batch; diags (n, 2K+1) or one
    per image (B, n, 2K+1). Blocks of b ≥ 2K rows times windows of b + 2K inputs: batched GEMMs,
    O(n · K) memory for the operator, O(image) for the data (no n × n matrix)."""
    ax = 1 if axis == "h" else 2
    batched = diags.ndim == 3
    n, K = diags.shape[-2], (diags.shape[-1] - 1) // 2
    diags = diags.astype(x.dtype)
    xm = jnp.moveaxis(x, ax, 1)                                      # (N, n, R, C)
    if 2 * K + 1 >= n // 2:                                          # small: a dense gather
        i = np.arange(n)[:, None]
        d = np.arange(n)[None] - i + K
        mat = jnp.where(jnp.asarray((d >= 0) & (d <= 2 * K)), diags[..., i, np.clip(d, 0, 2 * K)], 0)
        out = jnp.einsum("bij,bjrc->birc" if batched else "ij,bjrc->birc", mat, xm)
        return jnp.moveaxis(out, 1, ax)
    blk = max(2 * K, 32)
    nb = -(-n // blk)
    a, c = np.arange(blk)[:, None], np.arange(blk + 2 * K)[None]
    band = jnp.pad(diags, [(0, 0)] * (diags.ndim - 2) + [(0, nb * blk - n), (0, 0)])
    band = band.reshape(*band.shape[:-2], nb, blk, 2 * K + 1)
    mat = jnp.where(jnp.asarray((c - a >= 0) & (c - a <= 2 * K)), band[..., a, np.clip(c - a, 0, 2 * K)], 0)
    xp = jnp.pad(xm, [(0, 0), (K, (nb + 1) * blk - n - K), (0, 0), (0, 0)])
    xb = xp.reshape(xp.shape[0], nb + 1, blk, *xp.shape[2:])
    win = jnp.concatenate([xb[:, :-1], xb[:, 1:, :2 * K]], axis=2)  # (N, nb, blk + 2K, R, C)
    out = jnp.einsum("bjac,bjcrk->bjark" if batched else "jac,bjcrk->bjark", mat, win)
    out = out.reshape(out.shape[0], nb * blk, *out.shape[3:])[:, :n]
    return jnp.moveaxis(out, 1, ax)


def separable(rows: jnp.ndarray, cols: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """P_rows · x · P_colsᵀ for an NHWC batch, both given as bands."""
    return apply_band(cols, apply_band(rows, x, "h"), "w")


def correct(x0: jnp.ndarray, ref: jnp.ndarray, rows: jnp.ndarray, cols: jnp.ndarray, strength,
            iters: int = 1) -> jnp.ndarray:
    """x0 ← x0 + λ (ref − P x0), ``iters`` times, with P = rows ⊗ cols (bands). Pure; any batch.
    ``strength`` (λ) may be traced (0 turns the correction off without recompiling)."""
    lam = jnp.asarray(strength, x0.dtype)
    if lam.ndim == 1:
        lam = lam[:, None, None, None]
    for _ in range(int(iters)):
        x0 = x0 + lam * (ref - separable(rows, cols, x0))
    return x0


def noise_weight(alphas_cumprod, t, noise):
    """The weight of a consistency correction at step(s) ``t`` for an input whose noise std is
    ``noise`` (the model's [-1, 1] units; scalar or per image): s² / (s² + noise²) with
    s² = (1 − ᾱ_t)/ᾱ_t the noise variance the diffusion still carries at t, in x0 units — the
    correction may inject no more measurement noise than the process can absorb (DDNM+). Exactly
    1 where ``noise`` is 0. Traced; works on host arrays too."""
    abar = jnp.asarray(alphas_cumprod)[jnp.asarray(t, jnp.int32)]
    s2 = (1.0 - abar) / jnp.maximum(abar, 1e-12)
    noise = jnp.asarray(noise, s2.dtype)
    return jnp.where(noise > 0, s2 / jnp.maximum(s2 + noise * noise, 1e-20), 1.0)


def x0_corrector(ref, rows, cols, strength, iters: int, noise, alphas_cumprod):
    """The samplers' ``correct_x0(x0, t)`` hook with bands: λ at step t is ``strength`` ×
    :func:`noise_weight` for the input's ``noise`` (per image or scalar, model units; 0 gives
    ``strength`` at every step)."""
    return lambda x0, t: correct(x0, ref, rows, cols, strength * noise_weight(alphas_cumprod, t, noise), iters)


def tile_band(diags: np.ndarray, start: int, n: int) -> np.ndarray:
    """One axis of a tile's operator: rows [start, start+n) of P restricted to the same columns.
    The tile sees only its own pixels, so each row is rescaled to keep its original sum when the
    kept part holds more than half of it (a flat region stays flat at tile borders); the blend
    over overlaps and a final global projection take care of the rest → (n, 2K'+1) float32 with
    K' = min(K, n − 1)."""
    K = (diags.shape[1] - 1) // 2
    p = diags[start:start + n]
    rows = np.arange(start, start + p.shape[0])[:, None]
    col = rows + np.arange(-K, K + 1)[None] - start
    sub = np.where((col >= 0) & (col < n), p, 0.0)
    full_sum, sub_sum = p.sum(1, keepdims=True), sub.sum(1, keepdims=True)
    scale = np.where(np.abs(sub_sum) > 0.5 * np.abs(full_sum), full_sum / np.where(sub_sum == 0, 1, sub_sum), 1.0)
    k = min(K, n - 1)
    return (sub * scale)[:, K - k:K + k + 1].astype(np.float32)


def tile_operator(bands: tuple[np.ndarray, np.ndarray], y0: int, x0: int, th: int, tw: int):
    """(rows, cols) bands for the tile [y0:y0+th, x0:x0+tw] of the image's global bands."""
    return tile_band(bands[0], y0, th), tile_band(bands[1], x0, tw)


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

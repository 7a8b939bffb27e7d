"""How inference adapts to an input's degradation (:mod:`diffsr_jax.degradation`).

Data consistency pulls every predicted clean image towards the input: right for a clean bicubic
downscale, wrong for a noisy or JPEG-compressed one, whose noise and blocks it would copy into the
output. So the pipeline works with the input's *effective noise* σ_y (std in [0, 1] units):

- the additive noise the estimator reads, less its reading on clean photos (``dead_zone``:
  texture at the finest scale reads as a little noise), combined in quadrature with the error a
  JPEG of that quality leaves (``jpeg_sigma``: RMS error of JPEG on the protocol's LR images of
  training photos);
- each consistency correction at step t is weighted by s_t² / (s_t² + σ²), with s_t² =
  (1 − ᾱ_t)/ᾱ_t the noise variance the diffusion still carries at t (in x0 units) and σ the
  input's noise as the correction sees it (:meth:`Response.consistency_noise`: σ_y in model
  units, amplified by the lift and by the scale, since the correction acts on the LR band only):
  the correction may not inject more measurement noise than the process can still absorb
  (DDNM+'s rule for a known σ). The final projection gets the weight of the ladder's last step,
  so a noisy input is never projected onto hard; σ_y = 0 gives weight 1 everywhere, i.e.
  exactly the clean pipeline;
- the noise step t comes from the noise table's column for σ_y when the table is calibrated on a
  noise axis (:mod:`diffsr_jax.noise_table`), so it covers the input's own noise;
- an explicit ``kernel=area`` or ``blur=σ`` makes the consistency operator that downscaler. An
  *estimated* blur is reported but not acted on: on clean photos the estimate sometimes reads a
  blur that is not there, and a consistency operator with the wrong kernel costs far more (about
  1 dB on the image) than the right one gains.

The parameters (``dead_zone_255``, ``jpeg_quality`` / ``jpeg_sigma_255``) can be stored in the
model's prf.json under ``degradation``; the constants below, measured on training photos, are used
where it stores none. No JAX here: these are host-side numbers that become data in the
compiled program (the noise level is a traced array: one program serves every σ).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional

import numpy as np

# The estimator's reading on clean protocol LR images of 48 training photos at 2/2.7/4×: 95th
# percentile 2.25/255 (median 0.56). Readings below this are texture, not noise.
DEAD_ZONE = 2.5 / 255
# RMS error (8-bit units) of a JPEG of the protocol's LR images of the same photos, by quality.
JPEG_QUALITY = (30, 50, 75, 90, 100)
JPEG_SIGMA_255 = (11.1, 9.5, 7.5, 5.2, 0.0)
# Per-pixel std of the lift of unit white noise (both axes), measured on its matrices at 2–8×:
# the pseudo-inverse amplifies the input's noise, the bicubic upscale smooths it.
LIFT_GAIN = {"pinv": 1.15 ** 2, "bicubic": 0.9 ** 2}


@dataclasses.dataclass(frozen=True)
class Response:
    """What the pipeline does about one input: its effective noise and the kernel of its
    consistency operator."""
    sigma: float          # effective noise std, [0, 1] units (0 = the clean pipeline)
    kernel: str           # "bicubic" | "area" | "gaussian"
    blur: float           # extra Gaussian blur of the downscaler, LR pixels

    @property
    def model_sigma(self) -> float:
        """σ in the model's [-1, 1] units."""
        return 2.0 * self.sigma

    def consistency_noise(self, scale: float, lift: str = "pinv") -> float:
        """The noise level a consistency correction is weighed against (model units): the input's
        σ × the lift's noise gain × the scale. The correction acts in the LR band, which holds
        1/scale² of the diffusion noise's power, and the lift amplifies the input's noise by
        about LIFT_GAIN (per pixel, both axes); matching powers in that band gives this level."""
        return self.model_sigma * LIFT_GAIN[lift] * float(scale)

    def as_dict(self) -> dict:
        return {"effective_sigma_255": round(self.sigma * 255, 2), "kernel": self.kernel, "blur": self.blur}


CLEAN = Response(0.0, "bicubic", 0.0)


def jpeg_sigma(quality: Optional[int], params: Optional[Mapping] = None) -> float:
    """The RMS error ([0, 1] units) a JPEG of ``quality`` leaves on LR images (0 for None),
    interpolated in the measured table (the model's ``params`` or the module's)."""
    if quality is None:
        return 0.0
    qs = (params or {}).get("jpeg_quality", JPEG_QUALITY)
    sig = (params or {}).get("jpeg_sigma_255", JPEG_SIGMA_255)
    return float(np.interp(float(quality), qs, sig)) / 255.0


def response(deg, params: Optional[Mapping] = None) -> Response:
    """The pipeline's :class:`Response` to a :class:`diffsr_jax.degradation.Degradation`.

    An estimated noise level is reduced by the dead zone in quadrature (σ² − dz², clipped at 0), a
    given one is taken as it is; JPEG error adds in quadrature. ``kernel`` "area" and "gaussian"
    (or a given ``blur_sigma`` > 0) change the consistency operator; "unknown" and "lanczos" keep
    the bicubic one (the closest of the family)."""
    params = params or {}
    noise = float(deg.noise_sigma)
    if deg.source == "estimated":
        dz = float(params.get("dead_zone_255", DEAD_ZONE * 255)) / 255
        noise = math.sqrt(max(noise * noise - dz * dz, 0.0))
    sigma = math.sqrt(noise * noise + jpeg_sigma(deg.jpeg_quality, params) ** 2)
    kernel = deg.kernel if deg.kernel in ("area", "gaussian") else "bicubic"
    blur = float(deg.blur_sigma)
    if deg.source == "estimated":
        blur = 0.0  # reported, not acted on: a false reading would mismatch the operator badly
    if blur > 0 and kernel == "bicubic":
        kernel = "gaussian"
    return Response(sigma=sigma, kernel=kernel, blur=blur)

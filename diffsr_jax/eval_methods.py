"""The methods an evaluation compares, by name: ``fn(lr_image, target_hw) -> image`` on float
HxWx3 in [0, 1].

Built in: ``nearest``, ``bicubic``, ``lanczos`` (PIL, float32 per channel: no 8-bit rounding), the
OpenCV learned peers ``fsrcnn``, ``espcn``, ``lapsrn`` (optional), and Diff-SR: ``diffsr`` (the
paper's method: no consistency, no colour fix), ``diffsr-cons`` (data consistency) and
``diffsr-cons-colour`` (consistency + wavelet colour fix: the library's default mode), each with an
optional noise suffix ``@0.3`` (fraction of T) or ``@t=100`` (step) and a self-ensemble suffix
``-ens2/4/8`` before the ``@`` (``diffsr-cons-colour-ens8@t=100``). :func:`register_method` adds a
method; ``"package.module:function"`` imports one by name.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import os
import re
from typing import Callable, Optional, Sequence

import numpy as np

from diffsr_jax import api
from diffsr_jax.options import InferenceOptions, check_self_ensemble_size, parse_noise
from diffsr_jax.protocols import PIL_FILTERS, pil_resize_float, to_uint8

Method = Callable[[np.ndarray, tuple], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Classical


def _classical(name: str) -> Method:
    def fn(lr, target_hw):
        return pil_resize_float(lr, target_hw, name)
    fn.__name__ = name
    return fn


REGISTRY: dict[str, Method] = {name: _classical(name) for name in PIL_FILTERS}


def register_method(name: str, fn: Method) -> None:
    """Adds a method ``fn(lr_image, target_hw) -> image`` under ``name`` (replacing any)."""
    if not callable(fn):
        raise TypeError(f"method {name!r} is not callable")
    REGISTRY[name] = fn


# ---------------------------------------------------------------------------------------------
# OpenCV learned peers (FSRCNN / ESPCN / LapSRN via cv2.dnn_superres)

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
# Diff-SR

# name → the options each variant pins, whatever the library's defaults are.
DIFFSR_VARIANTS = {
    "diffsr": {"consistency": 0.0, "colour_fix": "none", "degradation": "clean"},   # the paper's method
    "diffsr-cons": {"consistency": 1.0, "colour_fix": "none"},
    "diffsr-cons-colour": {"consistency": 1.0, "colour_fix": "wavelet"},
}


def make_diffsr_method(model, options: Optional[InferenceOptions] = None, mesh=None) -> Method:
    """Diff-SR as a registry method: :func:`diffsr_jax.api.upscale_array` with ``options`` on
    whole images (no tiling). Every image uses the options' seed (common random numbers across
    methods and scales, so differences are the method's, not the draw's). The step used is left
    in ``fn.note``."""
    options = (options or InferenceOptions()).replace(tile=0)

    def fn(lr, target_hw):
        out, info = api.upscale_array(lr, tuple(target_hw), model=model, options=options, mesh=mesh)
        sampler = info.get("sampler", "ddim")
        fn.note = (f"t={info['t']}/{model.num_timesteps}, {info['steps']} DDIM steps" if sampler == "ddim" else
                   f"t={info['t']}/{model.num_timesteps}, {info['steps']} steps of {sampler}")
        return out

    fn.__name__, fn.note = "diffsr", ""
    return fn


def parse_diffsr_name(name: str) -> Optional[dict]:
    """The options a Diff-SR method name pins: "diffsr" → {consistency 0, colour_fix none, noise
    auto}, "diffsr@0.3" → noise 0.3, "diffsr-cons@t=50" → consistency 1 and noise t=50,
    "diffsr-ens8" → self_ensemble 8. None when not a Diff-SR name; ValueError for a bad suffix."""
    base, _, noise = name.partition("@")
    extra = {}
    ens = re.fullmatch(r"(.+)-ens(\d+)", base)
    if ens:
        base = ens.group(1)
    if base not in DIFFSR_VARIANTS:
        return None
    try:
        if ens:
            extra["self_ensemble"] = check_self_ensemble_size(int(ens.group(2)))
        extra["noise"] = parse_noise(noise or "auto")
    except ValueError as e:
        raise ValueError(f"bad Diff-SR method {name!r}: {e}") from None
    return {**DIFFSR_VARIANTS[base], **extra}


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
                  peer_dir: Optional[str] = None, options: Optional[InferenceOptions] = None,
                  mesh=None) -> MethodSet:
    """Names → methods. Peers whose requirements are missing are skipped with a reason (never
    silently replaced); unknown names raise. ``model_loader`` is called once, only if a Diff-SR
    method is asked for; ``options`` are the base options of every Diff-SR method (each name
    pins its own mode on top), ``mesh`` spreads each image over devices."""
    methods, skipped, model = {}, {}, None
    base = options or InferenceOptions()
    for name in names:
        if name in PEERS:
            reason = peer_unavailable_reason(peer_dir) or (None if peer_scales(peer_dir, name) else
                                                           f"no {PEERS[name]}_x*.pb in {peer_dir}")
            if reason:
                skipped[name] = reason
            else:
                methods[name] = make_opencv_peer(name, peer_dir)
            continue
        pinned = parse_diffsr_name(name)
        if pinned is not None:
            if model is None:
                if model_loader is None:
                    raise ValueError(f"method {name!r} needs a Diff-SR model")
                model = model_loader()
            methods[name] = make_diffsr_method(model, base.replace(**pinned), mesh)
            continue
        if name in REGISTRY:
            methods[name] = REGISTRY[name]
        elif ":" in name:
            methods[name] = _import_plugin(name)
        else:
            known = (sorted(REGISTRY) + sorted(PEERS) + sorted(DIFFSR_VARIANTS) + ["<diffsr name>@<noise>",
                                                                                  "<diffsr name>-ens{2,4,8}"])
            raise ValueError(f"unknown method {name!r}; known: {', '.join(known)} or 'module:function'")
    return MethodSet(methods=methods, skipped=skipped, model=model)

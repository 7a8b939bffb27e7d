"""A fast stand-in for diffsr_jax.api (bicubic instead of the model) for the CLI tests.

In-process: :func:`install` (the CLI tests' ``api`` fixture) puts a :class:`FakeApi` in ``sys.modules``.
As a program: ``python tests/fake_api.py ARGS...`` runs the real CLI (``diffsr_jax.cli.main``)
with the fake model, so batch jobs can be killed and resumed in a subprocess; the environment
variable ``FAKE_API_SLEEP`` (seconds per image) makes it slow enough to kill half-way.
"""

import os
import sys
import time
import types

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bicubic(image, out_hw):
    h, w = out_hw
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize(
        (w, h), Image.Resampling.BICUBIC)) for c in range(3)]
    return np.clip(np.stack(chans, -1), 0, 1).astype(np.float32)


class FakeApi(types.ModuleType):
    """Implements the api contract: load_model / upscale_array / upscale_batch (options=InferenceOptions)
    / local_mesh / DEFAULT_CHECKPOINT."""

    def __init__(self):
        super().__init__("diffsr_jax.api")
        self.DEFAULT_CHECKPOINT = "/nonexistent/bundled"
        self.load_calls = []
        self.calls = []  # one per image upscaled (by either entry point)
        self.batch_calls = []  # one per upscale_batch call: shapes, out_hw, progress, mesh
        self.array_calls = []  # input shapes given to upscale_array
        self.fail_on = set()  # input shapes (h, w) for which upscaling raises (a batch holding one too)
        self.batch_fail = False  # every upscale_batch call raises
        self.mesh = None  # what local_mesh() returns (None: one device)
        self.info_extra = {}  # merged into each image's info
        self.sleep = 0.0  # seconds per image

        class LoadedModel:
            num_timesteps = 1000

        self.LoadedModel = LoadedModel

    def load_model(self, checkpoint=None):
        from diffsr_jax.checkpointing import CheckpointError

        self.load_calls.append(checkpoint)
        if checkpoint is not None and os.path.exists(os.path.join(checkpoint, "CORRUPT")):
            raise CheckpointError(f"corrupt checkpoint metadata {checkpoint}/model.json: bad json")
        return self.LoadedModel()

    def local_mesh(self):
        return self.mesh

    def _one(self, image, out_hw, model, options, progress, mesh):
        assert isinstance(model, self.LoadedModel)
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
        self.calls.append(dict(shape=image.shape[:2], out_hw=tuple(out_hw), progress=progress, mesh=mesh,
                               **options.as_dict()))
        if self.sleep:
            time.sleep(self.sleep)
        full = options.with_defaults()
        return _bicubic(image, out_hw), {"t": 400, "noise_fraction": 0.4, "steps": options.steps or 25,
                                         "sampler": full.sampler or "ddim", "consistency": full.consistency,
                                         "colour_fix": full.colour_fix, "self_ensemble": options.self_ensemble or 1,
                                         "devices": 1 if mesh is None else 2, **self.info_extra}

    def upscale_array(self, image, out_hw, *, model, options, progress=False, mesh=None, jpeg_quantization=None):
        self.array_calls.append(image.shape[:2])
        if image.shape[:2] in self.fail_on:
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nlong XLA details")
        return self._one(image, out_hw, model, options, progress, mesh)

    def upscale_batch(self, images, out_hw, *, model, options, progress=False, mesh=None, jpeg_quantizations=None):
        self.batch_calls.append(dict(shapes=[im.shape[:2] for im in images], out_hw=tuple(out_hw),
                                     progress=progress, mesh=mesh))
        if self.batch_fail or any(im.shape[:2] in self.fail_on for im in images):
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nlong XLA details")
        return [self._one(im, out_hw, model, options, progress, mesh) for im in images]


def install(monkeypatch, tmp_path) -> "FakeApi":
    """Puts a :class:`FakeApi` in place of ``diffsr_jax.api`` for an in-process CLI test (the
    CLI's compilation-cache set-up recorded in ``cache_calls``, the cache under ``tmp_path``)."""
    import diffsr_jax
    from diffsr_jax import cli

    fake = FakeApi()
    monkeypatch.setitem(sys.modules, "diffsr_jax.api", fake)
    monkeypatch.setattr(diffsr_jax, "api", fake, raising=False)
    fake.cache_calls = []
    monkeypatch.setattr(cli, "_enable_compilation_cache", lambda: fake.cache_calls.append(1))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return fake


def main(argv) -> int:
    sys.path.insert(0, REPO)
    import diffsr_jax
    from diffsr_jax import cli

    fake = FakeApi()
    fake.sleep = float(os.environ.get("FAKE_API_SLEEP", "0"))
    sys.modules["diffsr_jax.api"] = fake
    diffsr_jax.api = fake
    cli._enable_compilation_cache = lambda: None
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

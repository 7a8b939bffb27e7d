import os

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    # Many tests build identical tiny programs (each train run re-jits its step): a persistent
    # compilation cache shared by the session (and its subprocesses) compiles each only once.
    import tempfile

    # The suite is dominated by XLA compiling many tiny programs, not by running them: LLVM's
    # optimisation level 0 compiles them ~5x faster (a tiny UNet's init: 15 s -> 3 s here). Set
    # before the first computation initialises the CPU backend; subprocesses inherit it.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_backend_optimization_level=0").strip()

    import jax

    cache = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="diffsr-jax-cache-"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # Start JAX now, on its single default CPU device: entry points that split work over one CPU
    # device per core when they start a process (calibrate.py's --cpu-devices auto) then keep it,
    # so every test sees the same device whichever runs first (multi-device tests use subprocesses).
    jax.devices()


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A few small generated photos-like images (smooth gradients + texture), never ../shared."""
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 48), (36, 36), (48, 40)]):
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = np.stack([yy, xx, 0.5 + 0.5 * np.sin(6 * (xx + yy + i))], -1)
        img = np.clip(base + 0.05 * rng.normal(size=base.shape), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return str(folder)


@pytest.fixture()
def tiny_config(image_folder, tmp_path):
    from configs import tiny

    c = tiny.get_config()
    c.data.sources = (image_folder,)
    c.data.data_dir = str(tmp_path / "tfds")
    return c


def random_params(model, hw: int = 8, seed: int = 0, kernel_gain: float = 1.0):
    """Init-shaped random params drawn with numpy from the abstract tree (model.init's threefry
    costs 30-40 s on these CPUs), perturbed so the zero-initialised head gives a non-zero ε.
    A small ``kernel_gain`` keeps the residual blocks near identity, like a trained network."""
    import jax
    import jax.numpy as jnp

    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, hw, hw, 3)),
                                                 jnp.zeros((1,), jnp.int32))["params"])
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        noise = 0.05 * rng.normal(size=leaf.shape)
        if name == "kernel":  # lecun-normal, Flax's default
            noise += kernel_gain * rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        elif name == "scale":
            noise += 1.0
        return jnp.asarray(noise, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An exported tiny model with non-trivial weights (the zero-init head would make ε ≡ 0)."""
    from configs import tiny
    from diffsr_jax import checkpointing, train_lib

    c = tiny.get_config()
    params = random_params(train_lib.build_model(c), kernel_gain=0.1)
    d = str(tmp_path_factory.mktemp("m") / "model")
    checkpointing.export_model(d, params, train_lib.model_hparams(c), train_lib.schedule_spec(c))
    return d


@pytest.fixture(scope="session")
def model(tiny_model_dir):
    from diffsr_jax import api

    return api.load_model(tiny_model_dir)

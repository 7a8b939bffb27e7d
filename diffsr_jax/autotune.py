"""Pick the fastest of several train steps that compute the same function, on this machine.

Why: which way of computing convolution weight gradients is fastest on a CPU depends on the CPU
and on XLA's kernel libraries, not on the model: the im2col GEMM (``conv_weight_grad="gemm"``,
models/conv.py) beats XLA's own on some CPUs and loses to XLA's YNNPACK fusions on others
(benchmarks/unet_speed.py measures both). ``train.conv_weight_grad="auto"`` therefore races the candidates on the run's first real
batches instead of trusting either measurement: every raced step is a genuine training step (the
candidates are the same function up to float rounding), so the race costs one extra compile and
nothing else.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Mapping, Optional

import jax
import numpy as np


class FastestStep:
    """A train step ``(state, batch, key) -> (state, metrics)`` that first alternates between the
    candidates (``rounds`` timed calls each, after one untimed call each for compilation), then
    delegates to the one with the smallest median time. ``chosen`` is None until then."""

    def __init__(self, candidates: Mapping[str, Callable], rounds: int = 3,
                 report: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.perf_counter):
        if not candidates:
            raise ValueError("FastestStep needs at least one candidate step")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        self._candidates = dict(candidates)
        self._names = list(self._candidates)
        self._calls = 0
        self._rounds = int(rounds)
        self._times: dict[str, list[float]] = {n: [] for n in self._names}
        self._report = report or (lambda msg: print(msg, file=sys.stderr))
        self._clock = clock
        self.chosen: Optional[str] = self._names[0] if len(self._names) == 1 else None

    def __call__(self, state, batch, key):
        if self.chosen is not None:
            return self._candidates[self.chosen](state, batch, key)
        name = self._names[self._calls % len(self._names)]
        warmup = self._calls < len(self._names)  # the first call of each candidate compiles it
        self._calls += 1
        t0 = self._clock()
        out = jax.block_until_ready(self._candidates[name](state, batch, key))
        if not warmup:
            self._times[name].append(self._clock() - t0)
        if all(len(t) >= self._rounds for t in self._times.values()):
            medians = {n: float(np.median(t)) for n, t in self._times.items()}
            self.chosen = min(medians, key=medians.get)
            self._report("fastest train step: " + ", ".join(f"{n} {s:.3f} s" for n, s in medians.items())
                         + f" (medians of {self._rounds}) -> {self.chosen}")
        return out

    @property
    def medians(self) -> dict:
        return {n: float(np.median(t)) for n, t in self._times.items() if t}

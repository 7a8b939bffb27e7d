"""UNet forward and train-step throughput as achieved GFLOP/s and as a fraction of fp32 peak.

    python benchmarks/unet_speed.py            # CPU and paper configs
    python benchmarks/unet_speed.py --quick    # fewer repetitions

FLOPs are XLA's own estimate (`compiled.cost_analysis()["flops"]`) of the compiled program; times
are medians. The CPU config's train step runs with XLA's conv weight gradients and with the GEMM
ones (models/conv.py), interleaved; configs/cpu.py's "auto" races the same two at the start of a
run and keeps the faster. ``--cpu-devices`` (default "auto", as training) splits that step's batch
over one XLA CPU device per core; its FLOPs are still counted on the one-device program (XLA's cost
analysis of a partitioned program counts one device's share).
Peak: measured, not assumed. benchmarks/fma_peak.c (independent fp32 FMA chains on the widest
vectors, one thread per core) is compiled with the system's C compiler and run; its GFLOP/s is the
denominator. Without a compiler, give --peak-gflops. For reference the script also prints what
XLA's own large GEMM reaches (a practical ceiling for any XLA program here).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from configs import cpu, default
from diffsr_jax import schedules, sharding, train_lib


def flops_of(compiled) -> float:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", 0.0))


def timed(fn, args, reps):
    out = fn(*args)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / reps


def measure_fma_peak():
    """(GFLOP/s, how) of benchmarks/fma_peak.c on all cores, or (None, why not)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler"
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.c")
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "fma_peak")
        build = subprocess.run([cc, "-O2", "-march=native", "-ffp-contract=fast", "-fopenmp", src, "-o", exe],
                               capture_output=True, text=True)
        if build.returncode:
            return None, f"fma_peak.c did not build: {build.stderr.strip()[:200]}"
        env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
        gflops, threads, lanes, _ = subprocess.run([exe], capture_output=True, text=True, env=env,
                                                   check=True).stdout.split()
    return float(gflops), f"fma_peak.c: {threads} threads x {lanes}-lane fp32 FMA"


def gemm_gflops(n=2048, reps=5):
    """XLA's fp32 GEMM rate on an n x n product (mean of reps)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    dot = jax.jit(lambda a: a @ a)
    return 2 * n ** 3 / 1e9 / timed(dot, (a,), reps)


def bench_forward(config, hw, batch, reps):
    model = train_lib.build_model(config)
    params = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,), jnp.int32)))(
        jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (batch, hw, hw, 3))
    t = jnp.full((batch,), 300, jnp.int32)
    fwd = jax.jit(lambda p, x, t: model.apply(p, x, t))
    flops = flops_of(fwd.lower(params, x, t).compile())
    return flops, timed(fwd, (params, x, t), reps)


def make_train(config, hw, batch, conv_weight_grad=None, mesh=None):
    """A compiled train step on a fixed batch: (FLOPs, run-one-step closure); with a mesh of
    several devices the batch is split over it as in training."""
    config.data.crop_size = hw
    if conv_weight_grad:
        config.train.conv_weight_grad = conv_weight_grad
    model, opt = train_lib.build_model(config), train_lib.build_optimizer(config.train)
    sched = schedules.schedule_from_spec(dict(config.schedule))
    state = jax.jit(lambda k: train_lib.init_train_state(model, opt, k, (hw, hw, 3)))(jax.random.key(0))
    step = train_lib.make_train_step(model, sched, opt, ema_decay=0.999)
    x = jax.random.uniform(jax.random.key(1), (batch, hw, hw, 3), minval=-1, maxval=1)
    key = jax.random.key(2)
    flops = flops_of(step.lower(state, x, key).compile())
    if mesh is not None and sharding.data_size(mesh) > 1:
        shardings = sharding.state_shardings(mesh, state)
        state = jax.device_put(state, shardings)
        step = train_lib.make_train_step(model, sched, opt, ema_decay=0.999, mesh=mesh, state_shardings=shardings)
        x = sharding.shard_batch(mesh, np.asarray(x))
    box = [state]

    def run_once():
        t0 = time.perf_counter()
        box[0], m = step(box[0], x, key)
        jax.block_until_ready(m)
        return time.perf_counter() - t0

    run_once()  # warm-up
    return flops, run_once


def bench_train(config, hw, batch, reps):
    flops, run_once = make_train(config, hw, batch)
    return flops, float(np.median([run_once() for _ in range(reps)]))


def bench_weight_grad_ab(rounds, mesh=None):
    """The CPU config's step with XLA's and with the GEMM weight gradient, interleaved round by
    round (this machine's speed drifts by ±30% between minutes; interleaving cancels the drift).
    Both rows count the "xla" program's FLOPs: im2col's zero padding adds multiplications by 0."""
    cases = {m: make_train(cpu.get_config(), 64, 32, m, mesh) for m in ("xla", "gemm")}
    times = {m: [] for m in cases}
    for _ in range(rounds):
        for m, (_, run_once) in cases.items():
            times[m].append(run_once())
    return cases["xla"][0], {m: float(np.median(t)) for m, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="fp32 peak to divide by (default: measured with fma_peak.c)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cpu-devices", default="auto", metavar="auto|N",
                    help="XLA CPU devices the CPU config's train step (batch 32) is split over, as "
                         "training's mesh.cpu_devices (default: auto = one per core)")
    args = ap.parse_args()
    try:  # before anything touches a device
        sharding.use_cpu_devices(sharding.cpu_device_count(args.cpu_devices, 32))
    except ValueError as e:
        ap.error(str(e))
    reps = 1 if args.quick else 3
    if args.peak_gflops is None:
        args.peak_gflops, how = measure_fma_peak()
        if args.peak_gflops is None:
            ap.error(f"cannot measure the fp32 peak ({how}): pass --peak-gflops")
    else:
        how = "given by --peak-gflops"
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, fp32 peak "
          f"{args.peak_gflops:.0f} GFLOP/s ({how})")
    g = gemm_gflops()
    print(f"XLA fp32 GEMM 2048³: {g:.1f} GFLOP/s = {g / args.peak_gflops:.1%} of peak")
    rows = [
        ("cpu config  forward 1x256²", lambda: bench_forward(cpu.get_config(), 256, 1, reps)),
        ("paper config forward 1x256²", lambda: bench_forward(default.get_config(), 256, 1, reps)),
        ("paper config train   1x256²", lambda: bench_train(default.get_config(), 256, 1, reps)),
    ]
    for name, cfg in [("cpu", cpu.get_config()), ("paper", default.get_config())]:
        model = train_lib.build_model(cfg)
        shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                                   jnp.zeros((1,), jnp.int32)))
        print(f"{name} config: {sum(x.size for x in jax.tree.leaves(shapes)) / 1e6:.2f}M parameters")
    print(f"{'case':38s} {'GFLOP':>8s} {'seconds':>8s} {'GFLOP/s':>8s} {'of peak':>8s}")
    mesh = sharding.make_mesh(devices=jax.devices("cpu")) if jax.devices()[0].platform == "cpu" else None
    flops, ab = bench_weight_grad_ab(4 if args.quick else 10, mesh)
    split = "" if mesh is None or sharding.data_size(mesh) == 1 else f" /{sharding.data_size(mesh)}dev"
    for mode, sec in ab.items():
        g = flops / 1e9
        name = f"cpu config  train   32x64² {mode}{split}"
        print(f"{name:38s} {g:8.1f} {sec:8.3f} {g / sec:8.1f} {g / sec / args.peak_gflops:8.1%}", flush=True)
    print(f"  (weight gradient as GEMM: {ab['xla'] / ab['gemm']:.2f}x the steps/s of XLA's, medians of "
          f"interleaved rounds)")
    for name, fn in rows:
        flops, sec = fn()
        g = flops / 1e9
        print(f"{name:38s} {g:8.1f} {sec:8.3f} {g / sec:8.1f} {g / sec / args.peak_gflops:8.1%}", flush=True)


if __name__ == "__main__":
    main()

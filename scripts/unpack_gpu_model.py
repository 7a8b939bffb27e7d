#!/usr/bin/env python
"""Turn the GPU run's flat EMA export back into a model folder the project loads (run HERE).

    python scripts/unpack_gpu_model.py gpu_out/model runs/gpu_model

gpu_out/ stands for the folder the GPU run's $OUT was copied back to. Its model/ holds model.json +
params.msgpack: scripts/gpu_train.py writes the EMA params flat, as two files independent of either
machine's Orbax version, so that $OUT stays a few small files that are easy to copy back (an Orbax
export is a deeper tree of many files). The result is an exported model (params/ via Orbax +
model.json, all fields kept) for diffsr_jax.load_model, benchmarks/denoise_quality.py --checkpoint,
evaluate.py, calibrate.py.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpu_inputs  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("flat_dir", help="folder with model.json and params.msgpack")
    p.add_argument("out_dir", help="new exported model folder (must not exist)")
    args = p.parse_args(argv)
    d = gpu_inputs.flat_to_model_dir(args.flat_dir, args.out_dir)
    from diffsr_jax import api

    m = api.load_model(d)  # the project's loader, as every user of the model will load it
    print(json.dumps({"model_dir": d, "step": m.meta.get("step"), "gpu_run": m.meta.get("gpu_run")}))


if __name__ == "__main__":
    main()

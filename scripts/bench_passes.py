"""Generator passes (forward, then the gradient to the latents) of the shipped DCGAN through ``frozen``'s
fused batch-norm + ReLU against the unfused frozen copy (``frozen(G, fuse=False)``), side by side.

    python scripts/bench_passes.py --out runs/bench_passes.json

For each batch (640 latents: DCGAN+Reg's 64 faces x 10 restarts; 128: DCGAN's 64 x 2), the two copies
run in alternating order, ``--rounds`` rounds of ``--passes`` passes each; medians of the per-pass
seconds. It also checks that the two give the same images and the same latent gradients, bit for bit.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invgan.checkpoint import load_models  # noqa: E402
from invgan.generators import frozen  # noqa: E402
from invgan.runtime import keep_freed_memory  # noqa: E402


def one_pass(net, z, dy):
    z = z.clone().requires_grad_(True)
    x = net(z)
    x.backward(dy)
    return x.detach(), z.grad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="640,128")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--out")
    a = ap.parse_args()
    keep_freed_memory()
    _, G, _, _ = load_models()
    nets = {"fused": frozen(G), "unfused": frozen(G, fuse=False)}
    rows = []
    for n in map(int, a.batches.split(",")):
        z = torch.randn(n, G.cfg.nz, generator=torch.Generator().manual_seed(0))
        dy = torch.randn(n, G.cfg.channels, G.cfg.image_size, G.cfg.image_size,
                         generator=torch.Generator().manual_seed(1))
        (x0, g0), (x1, g1) = one_pass(nets["unfused"], z, dy), one_pass(nets["fused"], z, dy)
        times = {k: [] for k in nets}
        for r in range(a.rounds):
            for k in (("fused", "unfused") if r % 2 == 0 else ("unfused", "fused")):
                t = time.perf_counter()
                for _ in range(a.passes):
                    one_pass(nets[k], z, dy)
                times[k].append((time.perf_counter() - t) / a.passes)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        rows.append({"latents": n, "fused_s_per_pass": med["fused"], "unfused_s_per_pass": med["unfused"],
                     "speedup": med["unfused"] / med["fused"], "fused_s": times["fused"], "unfused_s": times["unfused"],
                     "same_images": bool(torch.equal(x0, x1)), "same_gradients": bool(torch.equal(g0, g1))})
    out = {"rows": rows, "threads": torch.get_num_threads(), "rounds": a.rounds, "passes": a.passes}
    if a.out:
        from invgan.fileio import write_json

        write_json(a.out, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""GAN training (`invgan train`): DCGAN with the non-saturating loss, or WGAN-GP.

Single process, or several under ``torchrun`` (DistributedDataParallel: gloo on CPU, nccl on
GPU; each rank trains on its shard of every epoch; rank 0 writes logs and checkpoints).
A run folder holds: ``checkpoint.pt`` (latest; weights, optimiser, step and RNG state),
``log.csv``, ``samples/epoch-NNN.png`` (fixed noise) and ``snapshots/`` (G+D every K epochs).
``--resume`` continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import csv
import math
import os
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from invgan.errors import InvganError
from invgan.checkpoint import load_checkpoint, models_from_checkpoint, save_checkpoint
from invgan.data import default_celeba_root, is_celeba, load_images
from invgan.fileio import atomic_path, save_grid
from invgan.runtime import pick_device
from invgan.models import ModelConfig, build_models, sample_latent

LOSSES = ("nonsaturating", "wgan-gp")
LOG_FIELDS = ["step", "epoch", "images", "loss_d", "loss_g", "d_real", "d_fake", "grad_penalty",
              "images_per_s", "elapsed_s"]


@dataclass
class TrainConfig:
    """Every training setting; a recipe TOML sets any of these (model fields under [model])."""

    data: str | None = None          # CelebA folder, image folder or glob; None: configured CelebA
    partition: str | None = None    # None: "train" for a CelebA folder, else all images
    limit: int | None = None         # use only the first N images (smoke runs)
    epochs: int = 25
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "nonsaturating"
    n_critic: int = 5                # WGAN-GP: critic steps per generator step
    gp_weight: float = 10.0
    flip: bool = True
    seed: int = 0
    max_steps: int | None = None     # stop after this many generator steps
    checkpoint_every: int = 500      # steps
    snapshot_every: int = 0          # epochs; 0 = no snapshots
    log_every: int = 25              # steps
    amp: bool = True                 # bf16 autocast on CUDA
    channels_last: bool = True       # on CUDA
    num_samples: int = 64            # fixed-noise sample grid size

    def validate(self):
        """Raise ``InvganError`` naming the first bad setting."""
        if self.loss not in LOSSES:
            raise InvganError(f"unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        for name in ("epochs", "batch_size", "n_critic", "checkpoint_every", "log_every", "num_samples"):
            if getattr(self, name) < 1:
                raise InvganError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvganError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0:
            raise InvganError(f"lr must be > 0, got {self.lr}")


def read_recipe(path) -> tuple[dict, dict]:
    """Load a TOML recipe -> (train settings, model settings). Unknown keys are errors."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise InvganError(f"recipe {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvganError(f"recipe {str(path)!r} is not valid TOML: {exc}") from None
    model = raw.pop("model", {})
    raw.pop("description", None)
    raw = raw.get("train", raw)
    known = {f.name for f in fields(TrainConfig)}
    bad = set(raw) - known
    if bad:
        raise InvganError(f"recipe {str(path)!r}: unknown training settings {sorted(bad)}")
    bad = set(model) - set(ModelConfig.__dataclass_fields__)
    if bad:
        raise InvganError(f"recipe {str(path)!r}: unknown [model] settings {sorted(bad)}")
    return raw, model


# ----------------------------------------------------------------------------- helpers
def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _read_log(path: Path, upto_step: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                if int(row["step"]) <= upto_step:
                    rows.append(row)
            except (KeyError, ValueError, TypeError):
                continue  # a line cut off by an interrupted run
    return rows


# ----------------------------------------------------------------------------- training
def train(cfg: TrainConfig, model_cfg: ModelConfig, out_dir, resume: bool = False,
          device: str | None = None, progress: bool = True, cache_dir=None) -> dict:
    """Train G and D; returns a summary dict. See the module docstring for the outputs."""
    cfg.validate()
    out_dir = Path(out_dir)
    world, rank, local_rank = _dist_info()
    dev = pick_device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    is_main = rank == 0
    ckpt_path = out_dir / "checkpoint.pt"
    state = None
    if resume:
        if not ckpt_path.is_file():
            raise InvganError(f"resume: no checkpoint at {ckpt_path}")
        state = load_checkpoint(ckpt_path)
        model_cfg, _, _ = models_from_checkpoint(state, ckpt_path)
        saved = dict(state["meta"]["train_config"])
        for keep in ("epochs", "max_steps"):  # a resumed run may be extended
            saved[keep] = getattr(cfg, keep)
        cfg = TrainConfig(**saved)

    if cfg.partition is None:
        root = Path(cfg.data) if cfg.data else default_celeba_root()
        cfg.partition = "train" if root is not None and is_celeba(root) else "all"
    data = load_images(cfg.data, partition=cfg.partition, size=model_cfg.image_size,
                       limit=cfg.limit, progress=progress and is_main, cache_dir=cache_dir)
    n_shard = len(data) // world
    if n_shard < cfg.batch_size:
        raise InvganError(f"{len(data)} images over {world} process(es) is fewer than one batch "
                          f"of {cfg.batch_size}: lower batch_size")
    batches_per_epoch = n_shard // cfg.batch_size
    total_steps = cfg.epochs * batches_per_epoch // (cfg.n_critic if cfg.loss == "wgan-gp" else 1)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    images = torch.from_numpy(data.images).to(dev)  # uint8 (N, H, W, 3), decoded once

    torch.manual_seed(cfg.seed)
    G, D = build_models(model_cfg)
    G.to(dev)
    D.to(dev)
    use_cuda = dev.type == "cuda"
    mem_format = torch.channels_last if (use_cuda and cfg.channels_last) else torch.contiguous_format
    G.to(memory_format=mem_format)
    D.to(memory_format=mem_format)
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas)
    g_noise = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + rank)
    fixed_z = sample_latent(cfg.num_samples, model_cfg, torch.Generator().manual_seed(cfg.seed + 12345)).to(dev)
    step, batch_idx = 0, 0
    if state is not None:
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        ts = state["train_state"]
        opt_g.load_state_dict(ts["opt_g"])
        opt_d.load_state_dict(ts["opt_d"])
        step, batch_idx = int(ts["step"]), int(ts["batch_idx"])
        rng = ts["rng"][rank] if rank < len(ts["rng"]) else ts["rng"][0]
        g_noise.set_state(rng.to(g_noise.get_state().device) if hasattr(rng, "to") else rng)
    if world > 1:
        G = DDP(G, device_ids=[dev.index] if use_cuda else None)
        D = DDP(D, device_ids=[dev.index] if use_cuda else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda and cfg.amp)

    meta = {"train_config": asdict(cfg), "data": {"source": str(data.source), "partition": cfg.partition,
            "num_images": len(data), "skipped": len(data.skipped)},
            "preprocessing": "celeba: crop (35,55,143,163) -> bilinear resize; folders: centre square crop -> resize; [-1, 1]",
            "world_size": world}
    log_path = out_dir / "log.csv"
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = _read_log(log_path, step) if resume else []
        with atomic_path(log_path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, LOG_FIELDS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)

    shard = {}  # epoch -> this rank's image order for that epoch (a pure function of seed, epoch)

    def next_batch():
        nonlocal batch_idx
        epoch, pos = divmod(batch_idx, batches_per_epoch)
        if epoch not in shard:
            perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
            shard.clear()
            shard[epoch] = perm[rank::world].to(dev)
        idx = shard[epoch][pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        x = images[idx].permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        if cfg.flip:
            flip = torch.rand(x.shape[0], generator=g_noise, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        batch_idx += 1
        return x.contiguous(memory_format=mem_format)

    def checkpoint(path=ckpt_path, full=True):
        rngs = [g_noise.get_state().cpu()]
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if is_main:
            ts = {"opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                  "batch_idx": batch_idx, "rng": rngs} if full else None
            save_checkpoint(path, model_cfg, G, D, meta=meta | {"step": step}, train_state=ts)

    def write_samples(epoch):
        if not is_main:
            return
        g = G.module if world > 1 else G  # a DDP forward is a collective; rank 0 samples alone
        g.eval()
        with torch.no_grad(), autocast:
            s = g(fixed_z)
        g.train()
        save_grid(s, out_dir / "samples" / f"epoch-{epoch:03d}.png")

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not (progress and is_main))
    t0, images_seen0, last_log_t, last_log_images = time.time(), batch_idx * cfg.batch_size * world, time.time(), batch_idx * cfg.batch_size * world
    stats = {}
    while step < total_steps:
        epoch_before = batch_idx // batches_per_epoch
        # ---- discriminator / critic
        for _ in range(cfg.n_critic if cfg.loss == "wgan-gp" else 1):
            real = next_batch()
            z = sample_latent(real.shape[0], model_cfg, g_noise, dev)
            with autocast:
                fake = G(z)
            opt_d.zero_grad(set_to_none=True)
            if cfg.loss == "nonsaturating":
                with autocast:
                    out_real = D(real)
                loss_real = F.binary_cross_entropy_with_logits(out_real.float(), torch.ones_like(out_real, dtype=torch.float))
                loss_real.backward()
                with autocast:
                    out_fake = D(fake.detach())
                loss_fake = F.binary_cross_entropy_with_logits(out_fake.float(), torch.zeros_like(out_fake, dtype=torch.float))
                loss_fake.backward()
                loss_d, gp = loss_real + loss_fake, torch.zeros(())
            else:
                # One critic call on [real, fake, interpolates] (no batch-norm in the critic,
                # so images do not interact) keeps DDP to one forward per backward.
                eps = torch.rand(real.shape[0], 1, 1, 1, generator=g_noise, device=dev)
                interp = (eps * real + (1 - eps) * fake.detach().float()).requires_grad_(True)
                out = D(torch.cat([real, fake.detach().float(), interp]).contiguous(memory_format=mem_format))
                out_real, out_fake, out_interp = out.float().chunk(3)
                (grad,) = torch.autograd.grad(out_interp.sum(), interp, create_graph=True)
                gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss_d = out_fake.mean() - out_real.mean() + cfg.gp_weight * gp
                loss_d.backward()
            opt_d.step()
        # ---- generator
        opt_g.zero_grad(set_to_none=True)
        with autocast:
            out_gen = D(fake)
        if cfg.loss == "nonsaturating":
            loss_g = F.binary_cross_entropy_with_logits(out_gen.float(), torch.ones_like(out_gen, dtype=torch.float))
        else:
            loss_g = -out_gen.float().mean()
        loss_g.backward()
        opt_g.step()
        step += 1
        bar.update(1)

        if step % cfg.log_every == 0 or step == total_steps:
            now = time.time()
            seen = batch_idx * cfg.batch_size * world
            prob = torch.sigmoid if cfg.loss == "nonsaturating" else (lambda t: t)
            stats = {"step": step, "epoch": batch_idx / batches_per_epoch, "images": seen,
                     "loss_d": loss_d.item(), "loss_g": loss_g.item(),
                     "d_real": prob(out_real.detach().float()).mean().item(),
                     "d_fake": prob(out_fake.detach().float()).mean().item(),
                     "grad_penalty": float(gp.detach()), "images_per_s": (seen - last_log_images) / max(now - last_log_t, 1e-9),
                     "elapsed_s": now - t0}
            last_log_t, last_log_images = now, seen
            if is_main:
                with open(log_path, "a", newline="") as fh:
                    csv.DictWriter(fh, LOG_FIELDS).writerow(
                        {k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in stats.items()})
                bar.set_postfix(loss_d=f"{stats['loss_d']:.3f}", loss_g=f"{stats['loss_g']:.3f}",
                                d_real=f"{stats['d_real']:.2f}", d_fake=f"{stats['d_fake']:.2f}")
        epoch_after = batch_idx // batches_per_epoch
        if epoch_after > epoch_before:
            write_samples(epoch_after)
            if cfg.snapshot_every and epoch_after % cfg.snapshot_every == 0:
                checkpoint(out_dir / "snapshots" / f"epoch-{epoch_after:03d}.pt", full=False)
        if step % cfg.checkpoint_every == 0 and step < total_steps:
            checkpoint()
    bar.close()
    if use_cuda:
        torch.cuda.synchronize()
    loop_seconds = time.time() - t0  # the training loop alone, for images/s
    checkpoint()
    write_samples(math.ceil(batch_idx / batches_per_epoch))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    elapsed = time.time() - t0
    return {"steps": step, "epochs": batch_idx / batches_per_epoch, "checkpoint": str(ckpt_path),
            "seconds": elapsed, "images_per_s": (batch_idx * cfg.batch_size * world - images_seen0) / max(loop_seconds, 1e-9),
            "last": stats}

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
        for name in ("lr", "gp_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 if name == "lr" else v >= 0)):
                raise InvganError(f"{name} must be a finite number {'>' if name == 'lr' else '>='} 0, got {v!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                raise InvganError(f"{name} must be in [0, 1), got {v!r}")


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
@dataclass
class _Session:
    """Everything one training run holds: models, optimisers, data, position, RNG."""

    cfg: TrainConfig
    model_cfg: ModelConfig
    out_dir: Path
    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    images: torch.Tensor           # uint8 (N, H, W, 3) on the device, decoded once
    dev: torch.device
    world: int
    rank: int
    g_noise: torch.Generator       # latents, flips, WGAN-GP interpolation: this rank's stream
    fixed_z: torch.Tensor
    batches_per_epoch: int
    total_steps: int
    meta: dict
    mem_format: torch.memory_format
    autocast: object
    step: int = 0
    batch_idx: int = 0
    _order: dict = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def images_seen(self) -> int:
        return self.batch_idx * self.cfg.batch_size * self.world

    def next_batch(self) -> torch.Tensor:
        """This rank's next real batch in [-1, 1], randomly flipped; epochs are seeded permutations."""
        cfg = self.cfg
        epoch, pos = divmod(self.batch_idx, self.batches_per_epoch)
        if not self._order or epoch not in self._order:
            perm = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
            self._order = {epoch: perm[self.rank::self.world].to(self.dev)}
        idx = self._order[epoch][pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        x = self.images[idx].permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        if cfg.flip:
            flip = torch.rand(x.shape[0], generator=self.g_noise, device=self.dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        self.batch_idx += 1
        return x.contiguous(memory_format=self.mem_format)

    def checkpoint(self, path=None, full=True) -> None:
        """Save G, D (and with ``full`` the optimisers, position and every rank's RNG) atomically."""
        rngs = [self.g_noise.get_state().cpu()]
        if self.world > 1:
            gathered = [None] * self.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if self.is_main:
            ts = {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
                  "batch_idx": self.batch_idx, "rng": rngs} if full else None
            save_checkpoint(path or self.out_dir / "checkpoint.pt", self.model_cfg, self.G, self.D,
                            meta=self.meta | {"step": self.step}, train_state=ts)

    def write_samples(self, epoch: int) -> None:
        """samples/epoch-NNN.png from the fixed latents (rank 0)."""
        if not self.is_main:
            return
        g = self.G.module if self.world > 1 else self.G  # a DDP forward is a collective; rank 0 samples alone
        g.eval()
        with torch.no_grad(), self.autocast:
            s = g(self.fixed_z)
        g.train()
        save_grid(s, self.out_dir / "samples" / f"epoch-{epoch:03d}.png")


def _prepare(cfg, model_cfg, out_dir, resume, device, progress, cache_dir) -> _Session:
    """Devices and processes, resume state, data, models, optimisers, the log file."""
    world, rank, local_rank = _dist_info()
    dev = pick_device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
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
                       limit=cfg.limit, progress=progress and rank == 0, cache_dir=cache_dir)
    n_shard = len(data) // world
    if n_shard < cfg.batch_size:
        raise InvganError(f"{len(data)} images over {world} process(es) is fewer than one batch "
                          f"of {cfg.batch_size}: lower batch_size")
    batches_per_epoch = n_shard // cfg.batch_size
    total_steps = cfg.epochs * batches_per_epoch // (cfg.n_critic if cfg.loss == "wgan-gp" else 1)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's global RNG is left as it was
        torch.manual_seed(cfg.seed)
        G, D = build_models(model_cfg)
    use_cuda = dev.type == "cuda"
    mem_format = torch.channels_last if (use_cuda and cfg.channels_last) else torch.contiguous_format
    for net in (G, D):
        net.to(dev)
        net.to(memory_format=mem_format)
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
    meta = {"train_config": asdict(cfg), "data": {"source": str(data.source), "partition": cfg.partition,
            "num_images": len(data), "skipped": len(data.skipped)},
            "preprocessing": "celeba: crop (35,55,143,163) -> bilinear resize; folders: centre square crop -> resize; [-1, 1]",
            "world_size": world}
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = _read_log(out_dir / "log.csv", step) if resume else []
        with atomic_path(out_dir / "log.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, LOG_FIELDS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)
    return _Session(cfg, model_cfg, out_dir, G, D, opt_g, opt_d, torch.from_numpy(data.images).to(dev), dev, world,
                    rank, g_noise, fixed_z, batches_per_epoch, total_steps, meta, mem_format,
                    torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda and cfg.amp), step, batch_idx)


def _discriminator_step(s: _Session):
    """One D (critic) update on a real batch and a fresh fake one; returns the fake batch and stats."""
    cfg, D = s.cfg, s.D
    real = s.next_batch()
    z = sample_latent(real.shape[0], s.model_cfg, s.g_noise, s.dev)
    with s.autocast:
        fake = s.G(z)
    s.opt_d.zero_grad(set_to_none=True)
    if cfg.loss == "nonsaturating":
        with s.autocast:
            out_real = D(real)
        loss_real = F.binary_cross_entropy_with_logits(out_real.float(), torch.ones_like(out_real, dtype=torch.float))
        loss_real.backward()
        with s.autocast:
            out_fake = D(fake.detach())
        loss_fake = F.binary_cross_entropy_with_logits(out_fake.float(), torch.zeros_like(out_fake, dtype=torch.float))
        loss_fake.backward()
        loss_d, gp = loss_real + loss_fake, torch.zeros(())
    else:
        # One critic call on [real, fake, interpolates] (no batch-norm in the critic,
        # so images do not interact) keeps DDP to one forward per backward.
        eps = torch.rand(real.shape[0], 1, 1, 1, generator=s.g_noise, device=s.dev)
        interp = (eps * real + (1 - eps) * fake.detach().float()).requires_grad_(True)
        out = D(torch.cat([real, fake.detach().float(), interp]).contiguous(memory_format=s.mem_format))
        out_real, out_fake, out_interp = out.float().chunk(3)
        (grad,) = torch.autograd.grad(out_interp.sum(), interp, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss_d = out_fake.mean() - out_real.mean() + cfg.gp_weight * gp
        loss_d.backward()
    s.opt_d.step()
    return fake, {"loss_d": loss_d, "out_real": out_real, "out_fake": out_fake, "gp": gp}


def _generator_step(s: _Session, fake: torch.Tensor) -> torch.Tensor:
    """One G update through D on the last fake batch; returns the generator loss."""
    s.opt_g.zero_grad(set_to_none=True)
    with s.autocast:
        out_gen = s.D(fake)
    if s.cfg.loss == "nonsaturating":
        loss_g = F.binary_cross_entropy_with_logits(out_gen.float(), torch.ones_like(out_gen, dtype=torch.float))
    else:
        loss_g = -out_gen.float().mean()
    loss_g.backward()
    s.opt_g.step()
    return loss_g


def _log_row(s: _Session, d: dict, loss_g, t0: float, last: tuple) -> dict:
    """The log.csv row of this step (appended by rank 0); ``last``: (time, images) of the last row."""
    now, seen = time.time(), s.images_seen
    prob = torch.sigmoid if s.cfg.loss == "nonsaturating" else (lambda t: t)
    stats = {"step": s.step, "epoch": s.batch_idx / s.batches_per_epoch, "images": seen,
             "loss_d": d["loss_d"].item(), "loss_g": loss_g.item(),
             "d_real": prob(d["out_real"].detach().float()).mean().item(),
             "d_fake": prob(d["out_fake"].detach().float()).mean().item(),
             "grad_penalty": float(d["gp"].detach()), "images_per_s": (seen - last[1]) / max(now - last[0], 1e-9),
             "elapsed_s": now - t0}
    if s.is_main:
        with open(s.out_dir / "log.csv", "a", newline="") as fh:
            csv.DictWriter(fh, LOG_FIELDS).writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in stats.items()})
    return stats


def train(cfg: TrainConfig, model_cfg: ModelConfig, out_dir, resume: bool = False,
          device: str | None = None, progress: bool = True, cache_dir=None) -> dict:
    """Train G and D; returns a summary dict. See the module docstring for the outputs."""
    from tqdm import tqdm

    from invgan.fileio import check_output_dir

    cfg.validate()
    check_output_dir(out_dir)
    s = _prepare(cfg, model_cfg, Path(out_dir), resume, device, progress, cache_dir)
    cfg = s.cfg
    bar = tqdm(total=s.total_steps, initial=s.step, desc="train", unit="step", disable=not (progress and s.is_main))
    t0, seen0 = time.time(), s.images_seen
    last, stats = (t0, seen0), {}
    while s.step < s.total_steps:
        epoch_before = s.batch_idx // s.batches_per_epoch
        for _ in range(cfg.n_critic if cfg.loss == "wgan-gp" else 1):
            fake, d = _discriminator_step(s)
        loss_g = _generator_step(s, fake)
        s.step += 1
        bar.update(1)
        if s.step % cfg.log_every == 0 or s.step == s.total_steps:
            stats = _log_row(s, d, loss_g, t0, last)
            last = (time.time(), s.images_seen)
            bar.set_postfix({k: f"{stats[k]:.3f}" for k in ("loss_d", "loss_g", "d_real", "d_fake")})
        epoch_after = s.batch_idx // s.batches_per_epoch
        if epoch_after > epoch_before:
            s.write_samples(epoch_after)
            if cfg.snapshot_every and epoch_after % cfg.snapshot_every == 0:
                s.checkpoint(s.out_dir / "snapshots" / f"epoch-{epoch_after:03d}.pt", full=False)
        if s.step % cfg.checkpoint_every == 0 and s.step < s.total_steps:
            s.checkpoint()
    bar.close()
    if s.dev.type == "cuda":
        torch.cuda.synchronize()
    loop_seconds = time.time() - t0  # the training loop alone, for images/s
    s.checkpoint()
    s.write_samples(math.ceil(s.batch_idx / s.batches_per_epoch))
    if s.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"steps": s.step, "epochs": s.batch_idx / s.batches_per_epoch, "checkpoint": str(s.out_dir / "checkpoint.pt"),
            "seconds": time.time() - t0, "images_per_s": (s.images_seen - seen0) / max(loop_seconds, 1e-9),
            "last": stats}

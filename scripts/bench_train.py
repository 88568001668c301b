"""Training throughput: `invgan train`'s step against a plain PyTorch-examples/dcgan loop.

Both train the same DCGAN (nz 100, ngf = ndf = 64) with the same batch size on the same decoded
64x64 images, alternately (reference, invgan, reference, invgan, ...) in one process; each
round runs --steps generator steps after --warmup untimed ones. The reference loop is written
below in the style of github.com/pytorch/examples/tree/main/dcgan: a DataLoader over the
images (a TensorDataset of the cached crops, or with --ref-jpeg torchvision's ImageFolder
decoding the JPEGs each epoch as the example does), fp32, separate real/fake D passes.

    python scripts/bench_train.py [--device cuda] [--steps 50] [--rounds 3] [--batch-size 64]
        [--data PATH.npy] [--ref-jpeg] [--out bench_train.json]
"""

import argparse
import json
import platform
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

from invgan.data import default_celeba_root, load_images
from invgan.models import ModelConfig, build_models
from invgan.train import TrainConfig, train


class RefG(nn.Module):  # pytorch/examples dcgan Generator
    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class RefD(nn.Module):  # pytorch/examples dcgan Discriminator
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def reference_images_per_s(loader_factory, device, steps, warmup, batch_size):
    netG, netD = RefG().to(device), RefD().to(device)
    criterion = nn.BCELoss()
    optD = optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    done, t0 = 0, None
    while True:
        for data in loader_factory():
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.time()
            real = data[0].to(device)
            b = real.size(0)
            netD.zero_grad()
            label = torch.full((b,), 1.0, device=device)
            errD_real = criterion(netD(real), label)
            errD_real.backward()
            noise = torch.randn(b, 100, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(0.0)
            errD_fake = criterion(netD(fake.detach()), label)
            errD_fake.backward()
            optD.step()
            netG.zero_grad()
            label.fill_(1.0)
            errG = criterion(netD(fake), label)
            errG.backward()
            optG.step()
            done += 1
            if done == warmup + steps:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return steps * batch_size / (time.time() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--data", help="a .npy of decoded crops (default: the CelebA train partition)")
    ap.add_argument("--ref-jpeg", action="store_true", help="reference decodes JPEGs (ImageFolder)")
    ap.add_argument("--out")
    a = ap.parse_args()
    device = torch.device(a.device)
    data = load_images(a.data, "all" if a.data else "train", progress=False)
    x = data.tensor()

    if a.ref_jpeg:
        import torchvision.datasets as dset
        import torchvision.transforms as T

        ds = dset.ImageFolder(str(default_celeba_root()), transform=T.Compose([
            T.Resize(64), T.CenterCrop(64), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]))
        loader = lambda: torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=2, drop_last=True)
    else:
        ds = torch.utils.data.TensorDataset(x)
        loader = lambda: torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, drop_last=True)

    ref, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            ref.append(reference_images_per_s(loader, device, a.steps, a.warmup, a.batch_size))
            # warm-up steps in one call, then the timed steps resumed from its checkpoint: the
            # resumed call's images/s counts only its own training loop (setup excluded)
            cfg = TrainConfig(data=a.data, partition="all" if a.data else "train", batch_size=a.batch_size,
                              max_steps=a.warmup, log_every=10**9, checkpoint_every=10**9, seed=r)
            train(cfg, ModelConfig(), f"{tmp}/run{r}", device=a.device, progress=False)
            cfg.max_steps = a.warmup + a.steps
            s = train(cfg, ModelConfig(), f"{tmp}/run{r}", resume=True, device=a.device, progress=False)
            ours.append(s["images_per_s"])
            print(f"round {r}: reference {ref[-1]:.0f} img/s, invgan {ours[-1]:.0f} img/s", flush=True)
    res = {"command": " ".join(sys.argv), "device": str(device),
           "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
           "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
           "torch": torch.__version__, "batch_size": a.batch_size, "steps_per_round": a.steps,
           "reference_images_per_s": ref, "invgan_images_per_s": ours,
           "ratio_median": float(np.median(ours) / np.median(ref)),
           "reference_data": "ImageFolder JPEG decoding" if a.ref_jpeg else "in-memory tensors",
           "train_set_images": len(x),
           "invgan_seconds_per_epoch_20075_images": 20075 / float(np.median(ours))}
    print(json.dumps(res, indent=1))
    if a.out:
        from invgan.fileio import write_json

        write_json(a.out, res)


if __name__ == "__main__":
    from invgan.runtime import keep_freed_memory

    keep_freed_memory()  # as the invgan command does (README: From Python)
    main()

"""Every user mistake ends in one line naming the problem, exit code 2, no traceback, before any
compute and before anything is written.

Table-driven: each case runs through the real entry point (``invgan.cli.main``) in this process
(a traceback would surface as an exception and fail the case). Placeholders in the arguments:
OUT a fresh folder that must not appear, FILE an existing text file, NOPE a missing path, EMPTY an
empty folder, IMGS a folder of two good images, CKPT a tiny checkpoint, and recipe files
(R_*). After each case the temporary tree must be exactly as it was. Run them with

    python -m pytest -q tests/test_bad_input.py
"""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from invgan.cli import main

RECIPES = {
    "R_BADTOML": "[sweep\nexperiment = ",
    "R_OK": '[sweep]\nmethods = ["lasso-dct"]\nnum_images = 1\n[grid]\nmeasurements = [50]\n',
    "R_UNKNOWN_KEY": '[sweep]\nmethods = ["lasso-dct"]\n[settings]\nmeasurments = 50\n[grid]\nnoise_std = [0.1]\n',
    "R_ITERS0": '[sweep]\nmethods = ["dcgan"]\n[settings]\niters = 0\n[grid]\nmeasurements = [50]\n',
    "R_ITERS_TEXT": '[sweep]\nmethods = ["dcgan"]\n[settings]\niters = "ten"\n[grid]\nmeasurements = [50]\n',
    "R_M_TOO_BIG": '[sweep]\nmethods = ["lasso-dct"]\n[grid]\nmeasurements = [50, 99999]\n',
    "R_NO_METHODS": '[sweep]\nmethods = []\n[grid]\nmeasurements = [50]\n',
    "R_BAD_METHOD": '[sweep]\nmethods = ["lasso-dct", "magic"]\n[grid]\nmeasurements = [50]\n',
    "R_NOISE_TEXT": '[sweep]\nmethods = ["lasso-dct"]\n[grid]\nnoise_std = ["x"]\n',
    "R_NAN": '[sweep]\nmethods = ["lasso-dct"]\n[settings]\nnoise_std = nan\n[grid]\nmeasurements = [50]\n',
    "R_EMPTY_GRID": '[sweep]\nmethods = ["lasso-dct"]\n[grid]\nmeasurements = []\n',
    "R_BAD_EXPERIMENT": '[sweep]\nexperiment = "denoise"\nmethods = ["lasso-dct"]\n[grid]\nmeasurements = [50]\n',
    "R_INPAINT_OK": '[sweep]\nexperiment = "inpaint"\nmethods = ["tv"]\n[grid]\nmask = ["center"]\n',
    "R_INPAINT_BAD_MASK": '[sweep]\nexperiment = "inpaint"\nmethods = ["tv"]\n[grid]\nmask = ["center", "star"]\n',
    "R_TRAIN_BAD": '[train]\nepochs = 0\n',
    "R_TRAIN_UNKNOWN": '[train]\nepoch = 3\n',
}

# (arguments, text the one-line error must contain)
CASES = [
    # ---- cs: numbers
    ("cs --measurements 0", "must be >= 1"), ("cs --measurements -5", "must be >= 1"),
    ("cs --measurements 1e3", "expected an integer"), ("cs --measurements 99999 --methods lasso-dct", "between 1 and 12288"),
    ("cs --num-images 0", "must be >= 1"), ("cs --num-images abc", "expected an integer"),
    ("cs --noise-std -1", "finite number >= 0"), ("cs --noise-std nan", "finite number >= 0"),
    ("cs --noise-std inf", "finite number >= 0"), ("cs --iters 0", "must be >= 1"), ("cs --iters -3", "must be >= 1"),
    ("cs --restarts 0", "must be >= 1"), ("cs --lr 0", "finite number > 0"), ("cs --lr -1", "finite number > 0"),
    ("cs --lr nan", "finite number > 0"), ("cs --lr inf", "finite number > 0"), ("cs --z-reg -1", "finite number >= 0"),
    ("cs --z-reg nan", "finite number >= 0"), ("cs --z-clip 0", "finite number > 0"), ("cs --z-clip -1", "finite number > 0"),
    ("cs --z-clip inf", "finite number > 0"), ("cs --lasso-tol 0", "finite number > 0"), ("cs --lasso-tol -1", "finite number > 0"),
    ("cs --lasso-tol nan", "finite number > 0"), ("cs --grid-images 0", "must be >= 1"), ("cs --seed abc", "invalid int value"),
    ("cs --physics superres --factor 3 --methods lasso-dct --images IMGS", "must be a positive integer dividing"),
    ("cs --image-size 12 --measurements 50 --methods lasso-wavelet --images IMGS", "power-of-two"),
    # ---- cs: names
    ("cs --methods ,", "no method given"), ("cs --methods magic", "unknown method 'magic'"),
    ("cs --methods yeh", "unknown method 'yeh' for cs"), ("cs --physics blur", "unknown physics 'blur'"),
    ("cs --budget cheap", "invalid choice"), ("cs --input weird", "invalid choice"),
    # ---- cs: paths
    ("cs --images NOPE --methods lasso-dct", "does not exist"), ("cs --images EMPTY --methods lasso-dct", "is empty"),
    ("cs --images FILE --methods lasso-dct", "no image files"), ("cs --generator NOPE", "does not exist"),
    ("cs --generator FILE", "not a readable invgan checkpoint"), ("cs --generator EMPTY", "does not exist"),
    ("cs --out FILE --methods lasso-dct --images IMGS", "is a file"),
    ("cs --out FILE/sub --methods lasso-dct --images IMGS", "is a file"),
    ("cs --device cuda --methods lasso-dct", "CUDA is not available"), ("cs --device banana", "unknown device"),
    # ---- inpaint
    ("inpaint --mask-file NOPE --methods tv --images IMGS", "does not exist"),
    ("inpaint --mask file --methods tv --images IMGS", "needs a mask file"),
    ("inpaint --mask-file FILE --methods tv --images IMGS", "not a readable image"),
    ("inpaint --mask-file SMALLMASK --methods tv --images IMGS", "resize the mask"),
    ("inpaint --hole-size 0", "must be >= 1"), ("inpaint --hole-size 64 --methods tv --images IMGS", "between 1 and 63"),
    ("inpaint --fraction 0 --mask random", "strictly between 0 and 1"), ("inpaint --fraction 1 --mask random", "strictly between"),
    ("inpaint --fraction nan --mask random", "strictly between"), ("inpaint --fraction 0.5 --mask center", "random and blob"),
    ("inpaint --window 4", "odd"), ("inpaint --lam -1", "finite number >= 0"), ("inpaint --lam nan", "finite number >= 0"),
    ("inpaint --iters 0", "must be >= 1"), ("inpaint --lr inf", "finite number > 0"), ("inpaint --methods dcgan", "for inpaint"),
    ("inpaint --discriminator NOPE", "does not exist"), ("inpaint --out FILE --methods tv --images IMGS", "is a file"),
    ("inpaint --blend both --methods magic", "unknown method 'magic'"),
    # ---- train
    ("train --out OUT --lr inf --data IMGS", "finite number > 0"), ("train --out OUT --lr nan --data IMGS", "finite number > 0"),
    ("train --out OUT --lr 0 --data IMGS", "finite number > 0"), ("train --out OUT --epochs 0", "must be >= 1"),
    ("train --out OUT --batch-size 0", "must be >= 1"), ("train --out OUT --n-critic 0", "must be >= 1"),
    ("train --out OUT --data NOPE", "does not exist"), ("train --out FILE --data IMGS", "is a file"),
    ("train --out OUT --resume", "no checkpoint"), ("train --out OUT --recipe NOPE", "does not exist"),
    ("train --out OUT --recipe R_BADTOML", "not valid TOML"), ("train --out OUT --recipe R_TRAIN_BAD --data IMGS", "epochs must be >= 1"),
    ("train --out OUT --recipe R_TRAIN_UNKNOWN", "unknown training settings"),
    ("train --out OUT --data IMGS --batch-size 64", "fewer than one batch"),
    # ---- sweep
    ("sweep --recipe NOPE --out OUT", "does not exist"), ("sweep --recipe R_BADTOML --out OUT", "not valid TOML"),
    ("sweep --recipe R_UNKNOWN_KEY --out OUT", "unknown settings key 'measurments'"),
    ("sweep --recipe R_ITERS0 --out OUT", "iters must be an integer >= 1"),
    ("sweep --recipe R_ITERS_TEXT --out OUT", "iters must be an integer >= 1"),
    ("sweep --recipe R_M_TOO_BIG --out OUT", "between 1 and 12288"),
    ("sweep --recipe R_NO_METHODS --out OUT", "non-empty list 'methods'"),
    ("sweep --recipe R_BAD_METHOD --out OUT", "unknown method 'magic'"),
    ("sweep --recipe R_NOISE_TEXT --out OUT", "noise_std must be a finite number"),
    ("sweep --recipe R_NAN --out OUT", "noise_std must be a finite number"),
    ("sweep --recipe R_EMPTY_GRID --out OUT", "non-empty list"),
    ("sweep --recipe R_BAD_EXPERIMENT --out OUT", "unknown experiment 'denoise'"),
    ("sweep --recipe R_INPAINT_BAD_MASK --out OUT", "unknown mask 'star'"),
    ("sweep --recipe R_OK --out OUT --shard 3/2", "--shard must be i/n"),
    ("sweep --recipe R_OK --out FILE", "is a file"), ("sweep --recipe R_ITERS0 --out OUT --num-images 0", "must be >= 1"),
    ("sweep --recipe R_ITERS0 --out OUT --merge-only", "iters must be"),
    ("sweep --recipe R_OK --out OUT --lasso-tol 0", "a finite number > 0"),
    ("sweep --recipe R_OK --out OUT --lasso-tol nan", "a finite number > 0"),
    ("sweep --recipe R_INPAINT_OK --out OUT --lasso-tol 1e-4", "--lasso-tol does not apply to inpaint sweeps"),
    # ---- sample, plot, data
    ("sample --n 0 --out OUT/s.png", "must be >= 1"), ("sample --generator NOPE --out OUT/s.png", "does not exist"),
    ("sample --out FILE/s.png", "is a file"), ("sample --out OUT/s.xyz", "unknown image format"),
    ("plot NOPE --out OUT/f.png", "not exist"), ("plot EMPTY --out OUT/f.png", "no results"),
    ("plot FILE --out OUT/f.png", "not a results JSON"), ("plot RESULTS --out OUT/f.xyz", "unknown figure format"),
    ("plot RESULTS --out FILE/f.png", "is a file"),
    ("cs --generator CKPT_NAN --methods dcgan", "NaN or infinite"),
    ("cs --images BADCELEBA --methods lasso-dct", "not a text file"),
    ("data BADCELEBA", "not a text file"),
    ("data NOPE", "does not exist"), ("data IMGS --partition val", "needs a CelebA folder"),
]


@pytest.fixture(scope="module")
def place(tmp_path_factory, tiny_ckpt):
    root = tmp_path_factory.mktemp("bad")
    (root / "file.txt").write_text("not an image, not a checkpoint\n")
    (root / "empty").mkdir()
    imgs = root / "imgs"
    imgs.mkdir()
    from PIL import Image
    from skimage import data as skdata
    for i, arr in enumerate([skdata.astronaut(), skdata.chelsea()]):
        Image.fromarray(arr[:200, :200]).save(imgs / f"{i}.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(root / "small_mask.png")
    results = root / "results.json"
    results.write_text(json.dumps({"rows": [{"id": "a", "method": "lasso-dct", "m": 50, "mse": 0.1}]}))
    from invgan.checkpoint import load_checkpoint, save_checkpoint
    from invgan.models import ModelConfig, build_models
    ck = load_checkpoint(tiny_ckpt)
    G, D = build_models(ModelConfig.from_dict(ck["model"]))
    with torch.no_grad():
        next(G.parameters()).fill_(float("nan"))
    save_checkpoint(root / "nan.pt", ModelConfig.from_dict(ck["model"]), G, D)
    celeba = root / "badceleba"
    (celeba / "img_align_celeba").mkdir(parents=True)
    (celeba / "list_eval_partition.txt").write_bytes(bytes(range(256)) * 4)
    names = {"CKPT_NAN": root / "nan.pt", "BADCELEBA": celeba, "FILE": root / "file.txt", "NOPE": root / "nope", "EMPTY": root / "empty", "IMGS": imgs,
             "CKPT": tiny_ckpt, "SMALLMASK": root / "small_mask.png", "RESULTS": results}
    for key, text in RECIPES.items():
        names[key] = root / f"{key.lower()}.toml"
        names[key].write_text(text)
    return root, names


def _tree(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


def _argv(text, names, out):
    argv = []
    for a in text.split():
        for key in sorted(names, key=len, reverse=True):
            a = a.replace(key, str(names[key]))
        argv.append(a.replace("OUT", str(out)))
    if argv[0] in ("cs", "inpaint") and "--out" not in argv:
        argv += ["--out", str(out)]
    return argv + (["--quiet"] if argv[0] in ("cs", "inpaint", "train", "sweep", "data") else [])


@pytest.mark.parametrize("text,needle", CASES, ids=[c[0] for c in CASES])
def test_user_mistake_is_one_line_exit_2_nothing_written(text, needle, place, capsys, monkeypatch):
    root, names = place
    monkeypatch.chdir(root)  # a default output folder would appear here (and fail the check)
    out = root / "out-must-not-appear"
    before = _tree(root)
    t0 = time.time()
    with pytest.raises(SystemExit) as exc:
        main(_argv(text, names, out))
    err = capsys.readouterr().err
    lines = [l for l in err.replace("\r", "\n").splitlines() if l.strip()]
    assert exc.value.code == 2, (exc.value.code, err)
    assert len(lines) == 1 and lines[0].startswith("invgan: error:"), err
    assert needle in lines[0], (needle, lines[0])
    assert _tree(root) == before, "a file was written"
    assert time.time() - t0 < 30, "the mistake was found late"

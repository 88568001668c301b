import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from invgan import InvganError
from invgan.data import CELEBA_BOX, celeba_names, describe_celeba, load_images, to_tensor, to_uint8

from conftest import assert_user_error, run_cli, run_main


def test_partition_file_is_source_of_truth(celeba_root):
    counts = describe_celeba(celeba_root)
    assert counts == {"train": 20075, "val": 2720, "test": 0}
    val = celeba_names(celeba_root, "val")
    ids = [int(n[:6]) for n in val]
    assert ids == sorted(ids) and min(ids) >= 162771
    assert ids[-1] - ids[0] + 1 > len(ids)  # non-contiguous subset
    assert all(162771 <= int(n[:6]) <= 182637 for n in val)


def test_celeba_preprocessing_and_cache(celeba_root, tmp_path):
    s = load_images(celeba_root, "val", limit=5, cache_dir=tmp_path, progress=False)
    assert s.images.shape == (5, 64, 64, 3) and s.images.dtype == np.uint8
    assert s.ids == celeba_names(celeba_root, "val")[:5]
    with Image.open(celeba_root / "img_align_celeba" / s.ids[2]) as im:
        ref = np.asarray(im.convert("RGB").crop(CELEBA_BOX).resize((64, 64), Image.BILINEAR, reducing_gap=None))
    assert np.array_equal(s.images[2], ref)
    assert len(list(tmp_path.glob("images-*.npz"))) == 1
    again = load_images(celeba_root, "val", limit=5, cache_dir=tmp_path, progress=False)
    assert np.array_equal(again.images, s.images) and again.ids == s.ids
    x = s.tensor()
    assert x.shape == (5, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(to_tensor(s.images)), s.images)


def _mini_celeba(celeba_root, dest, n=6):
    names = celeba_names(celeba_root, "val")[:n]
    (dest / "img_align_celeba").mkdir(parents=True)
    for name in names:
        shutil.copy(celeba_root / "img_align_celeba" / name, dest / "img_align_celeba" / name)
    (dest / "list_eval_partition.txt").write_text("".join(f"{n} 1\n" for n in names))
    return names


def test_zip_layout_matches_folder(celeba_root, tmp_path):
    names = _mini_celeba(celeba_root, tmp_path / "a")
    zroot = tmp_path / "z"
    zroot.mkdir()
    shutil.copy(tmp_path / "a" / "list_eval_partition.txt", zroot)
    with zipfile.ZipFile(zroot / "img_align_celeba.zip", "w") as zf:
        for n in names:
            zf.write(tmp_path / "a" / "img_align_celeba" / n, f"img_align_celeba/{n}")
    a = load_images(tmp_path / "a", "val", use_cache=False, progress=False)
    z = load_images(zroot, "val", use_cache=False, progress=False)
    assert a.ids == z.ids == names and np.array_equal(a.images, z.images)


def test_corrupt_truncated_and_missing_files_are_skipped(celeba_root, tmp_path):
    names = _mini_celeba(celeba_root, tmp_path / "c")
    img_dir = tmp_path / "c" / "img_align_celeba"
    data = (img_dir / names[1]).read_bytes()
    (img_dir / names[1]).write_bytes(data[: len(data) // 3])        # truncated JPEG
    (img_dir / names[2]).write_bytes(b"this is not an image")       # not an image
    (img_dir / names[3]).unlink()                                    # listed but missing
    s = load_images(tmp_path / "c", "val", use_cache=False, progress=False)
    assert s.ids == [names[0], names[4], names[5]]
    skipped = dict(s.skipped)
    assert set(skipped) == {names[1], names[2], names[3]}
    assert "missing" in skipped[names[3]]
    proc = run_cli("data", tmp_path / "c", "--quiet", env={"INVGAN_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "3 usable images" in proc.stdout and names[2] in proc.stdout


def test_plain_folder_and_glob(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40 + 10 * i, 90, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    s = load_images(tmp_path, size=32, use_cache=False, progress=False)
    assert s.images.shape == (3, 32, 32, 3) and [n for n, _ in s.skipped] == [str(tmp_path / "bad.jpg")]
    g = load_images(str(tmp_path / "im*.png"), size=32, use_cache=False, progress=False)
    assert np.array_equal(g.images, s.images)


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(InvganError, match="does not exist"):
        load_images(tmp_path / "nope", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvganError, match="empty"):
        load_images(tmp_path / "empty", progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(InvganError, match="no usable images"):
        load_images(tmp_path / "junk", use_cache=False, progress=False)
    assert_user_error(run_main("data", tmp_path / "nope"), "does not exist")
    assert_user_error(run_main("data", tmp_path / "junk", "--quiet"), "no usable images")


def test_to_tensor_of_a_read_only_array_gives_no_warning():
    import warnings

    import numpy as np

    from invgan.data import to_tensor

    a = np.full((2, 4, 4, 3), 255, dtype=np.uint8)
    a.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_tensor(a)
    assert t.shape == (2, 3, 4, 4) and bool((t == 1).all())

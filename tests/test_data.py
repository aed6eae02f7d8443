"""The real Fashion-MNIST files, and refusal of every kind of broken copy."""
import gzip
import shutil

import numpy as np
import pytest

from bnexp import data
from bnexp.errors import DataError


@pytest.fixture(scope="module")
def dataset(fashion_root):
    return data.load(fashion_root)


def test_real_files_load_with_expected_shapes_and_balance(dataset):
    assert dataset.train.images.shape == (60000, 28, 28)
    assert dataset.test.images.shape == (10000, 28, 28)
    assert dataset.train.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(dataset.train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(dataset.test.labels), [1000] * 10)
    assert dataset.train.images.max() == 255 and dataset.train.images.min() == 0


def copy_dataset(src, dst):
    dst.mkdir()
    for spec in data.FILES.values():
        shutil.copy(src / spec.name, dst / spec.name)
    return dst


def rewrite(path, change):
    with gzip.open(path, "rb") as f:
        raw = bytearray(f.read())
    change(raw)
    with gzip.open(path, "wb") as f:
        f.write(bytes(raw))


def test_recompressed_copy_is_accepted(fashion_root, tmp_path):
    """Verification is on the decompressed content, so re-compressing is fine."""
    root = copy_dataset(fashion_root, tmp_path / "fm")
    rewrite(root / data.FILES["test_labels"].name, lambda raw: None)
    assert data.load(root).test.labels.shape == (10000,)


def truncate(path):
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def set_byte(offset, value):
    return lambda raw: raw.__setitem__(offset, value)


CORRUPTIONS = {
    # key: (file, how to break it, words the error must contain)
    "truncated_gz": ("train_images", truncate, "not a valid gzip"),
    "not_gzip": ("train_labels", lambda p: p.write_bytes(b"hello"), "not a valid gzip"),
    "wrong_magic": ("test_images", lambda p: rewrite(p, set_byte(3, 0x01)), "magic"),
    "wrong_count": ("test_labels", lambda p: rewrite(p, set_byte(7, 0x01)), "items"),
    "label_out_of_range": ("test_labels", lambda p: rewrite(p, set_byte(8, 10)), "out of range"),
    "one_pixel_changed": ("test_images", lambda p: rewrite(p, set_byte(5000, 7)), "SHA-256"),
    "missing": ("train_labels", lambda p: p.unlink(), "not found"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_broken_copy_is_refused_naming_the_file(fashion_root, tmp_path, case):
    key, breaker, words = CORRUPTIONS[case]
    root = copy_dataset(fashion_root, tmp_path / "fm")
    target = root / data.FILES[key].name
    breaker(target)
    with pytest.raises(DataError) as err:
        data.load(root)
    message = str(err.value)
    assert str(target) in message and words in message
    assert "make data" in message  # says how to get good data


def test_root_that_is_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        data.load(tmp_path / "nope")


def test_search_order_prefers_environment_variable(fashion_root, tmp_path, monkeypatch):
    root = copy_dataset(fashion_root, tmp_path / "fm")
    monkeypatch.setenv("BNEXP_DATA", str(root))
    assert data.search_paths()[0] == root
    assert data.find_root(None) == root


def test_check_command(fashion_root):
    assert data.main(["check", str(fashion_root)]) == 0
    assert data.main(["bogus"]) == 2

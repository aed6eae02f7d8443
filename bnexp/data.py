"""Fashion-MNIST from the official IDX files: find, verify, load, fetch.

The files are read directly (gzip + numpy) instead of through gluon's
FashionMNIST class, which checks the SHA-1 of the *compressed* files and tries
to download on a mismatch. Here the *decompressed* content is verified, so any
faithful copy (Debian's package, the official download, a re-compressed file)
is accepted and anything else is refused with a message naming the file. No more
than the official size is ever decompressed (a small file that inflates to
gigabytes is refused, not read), and the download, over HTTPS only, stops at
MAX_DOWNLOAD bytes and is verified before it replaces anything.

    python -m bnexp.data check [ROOT]   # find and verify, print where
    python -m bnexp.data fetch          # make the data available (the official download)

This package never installs anything: `make data` installs Debian's package
dataset-fashion-mnist first where it can (as root), then runs `fetch`.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnexp.command_name import invoked_as
from bnexp.errors import DataError
from bnexp import data_copies as copies
from bnexp.files import replaced_atomically, user_cache

NUM_CLASSES = 10
IMAGE_SIDE = 28


@dataclass(frozen=True)
class IdxFile:
    """One of the four official files and what its decompressed content must be."""
    name: str
    magic: int  # 2051 = uint8 images (3 dims), 2049 = uint8 labels (1 dim)
    count: int
    sha256: str

    @property
    def header(self) -> int:
        return 16 if self.magic == 2051 else 8

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, IMAGE_SIDE, IMAGE_SIDE) if self.magic == 2051 else (self.count,)

    @property
    def size(self) -> int:
        """Bytes of the decompressed file."""
        return self.header + math.prod(self.shape)


FILES = {
    "train_images": IdxFile("train-images-idx3-ubyte.gz", 2051, 60000,
                            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": IdxFile("train-labels-idx1-ubyte.gz", 2049, 60000,
                            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": IdxFile("t10k-images-idx3-ubyte.gz", 2051, 10000,
                           "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte.gz", 2049, 10000,
                           "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # package dataset-fashion-mnist
CACHE_DIR = user_cache() / "fashion-mnist"
# The official files, in Zalando's repository (its S3 website mirror has no HTTPS).
OFFICIAL_URL = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
MAX_DOWNLOAD = 64 << 20  # bytes per file; the largest official one is 26 MB
HOW_TO_GET = ("Get the official files with `make data` (Debian package dataset-fashion-mnist, "
              "else the official download), or set data.root to a folder holding the four "
              ".gz files.")


def search_paths() -> list[Path]:
    """Where the data is looked for when data.root is null, first match wins."""
    paths = [Path(os.environ["BNEXP_DATA"])] if os.environ.get("BNEXP_DATA") else []
    return paths + [DEBIAN_DIR, CACHE_DIR]


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (N, 28, 28)
    labels: np.ndarray  # uint8, (N,)


@dataclass(frozen=True)
class FashionMNIST:
    root: Path
    train: Split
    test: Split


def read_idx(path: Path, spec: IdxFile) -> np.ndarray:
    """Decompress and verify one IDX file; raise DataError naming it if anything is off.
    At most one byte more than the official file's size is decompressed. A verified copy
    of this very file, unchanged since, is read instead (bnexp/data_copies.py)."""
    copy = copies.copy_of(path)
    raw = copies.read(copy, spec.size, spec.sha256) if copy else None
    if raw is None:
        raw = decompress(path, spec)
        if copy:
            copies.keep(copy, raw)
    return np.frombuffer(raw, dtype=np.uint8, offset=spec.header).reshape(spec.shape)


def decompress(path: Path, spec: IdxFile) -> bytes:
    """The decompressed content of `path`, verified against the official file's (read_idx)."""
    header, expected_len = spec.header, spec.size
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(expected_len + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. {HOW_TO_GET}") from None
    except PermissionError:
        raise DataError(f"{path}: not readable (permission denied).") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a .gz file. {HOW_TO_GET}") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a valid gzip file ({err}); it is truncated or corrupt. "
                        f"{HOW_TO_GET}") from None
    if len(raw) > expected_len:
        raise DataError(f"{path}: decompresses to more than the {expected_len} bytes of the "
                        f"official file (stopped there). {HOW_TO_GET}")
    if len(raw) < header:
        raise DataError(f"{path}: only {len(raw)} bytes, shorter than an IDX header. {HOW_TO_GET}")
    magic, count = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
    if magic != spec.magic:
        raise DataError(f"{path}: IDX magic number {magic}, expected {spec.magic}; "
                        f"this is not the {spec.name} file. {HOW_TO_GET}")
    if count != spec.count:
        raise DataError(f"{path}: holds {count} items, expected {spec.count}. {HOW_TO_GET}")
    if spec.magic == 2051:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataError(f"{path}: images are {rows}x{cols}, expected 28x28. {HOW_TO_GET}")
    if len(raw) != expected_len:
        raise DataError(f"{path}: {len(raw)} bytes after decompression, expected {expected_len}; "
                        f"the file is truncated or padded. {HOW_TO_GET}")
    top = int(np.frombuffer(raw, np.uint8, offset=header).max()) if spec.magic == 2049 else 0
    if top >= NUM_CLASSES:
        raise DataError(f"{path}: label {top} is out of range 0..{NUM_CLASSES - 1}. {HOW_TO_GET}")
    if hashlib.sha256(raw).hexdigest() != spec.sha256:
        raise DataError(f"{path}: content differs from the official Fashion-MNIST file "
                        f"(SHA-256 of the decompressed data). {HOW_TO_GET}")
    return raw


def find_root(root: str | Path | None) -> Path:
    """The folder to read: `root` if given, else the first search path holding all four files."""
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"data.root={root}: not a directory. {HOW_TO_GET}")
        if not os.access(root, os.R_OK | os.X_OK):
            raise DataError(f"data.root={root}: not readable (permission denied).")
        return root
    for candidate in search_paths():
        if all((candidate / spec.name).is_file() for spec in FILES.values()):
            return candidate
    looked = ", ".join(str(p) for p in search_paths())
    raise DataError(f"Fashion-MNIST not found (looked in {looked}). {HOW_TO_GET}")


def load(root: str | Path | None = None) -> FashionMNIST:
    """Find, verify and load the whole dataset; nothing partial is ever returned."""
    folder = find_root(root)
    arrays = {key: read_idx(folder / spec.name, spec) for key, spec in FILES.items()}
    return FashionMNIST(
        root=folder,
        train=Split(arrays["train_images"], arrays["train_labels"]),
        test=Split(arrays["test_images"], arrays["test_labels"]),
    )


def validation_split(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training images to train on and of `size` held out for validation,
    stratified: each class gives the same share (its share of `size`, rounded, the rest
    spread over the first classes). A pure function of (labels, size, seed), so every run
    with the same `data.val_seed` holds out the same images, whatever its own seed."""
    if size <= 0:
        return np.arange(len(labels)), np.arange(0)
    rng = np.random.default_rng([seed, 0x5A11D])
    classes = np.unique(labels)
    per_class = np.full(len(classes), size // len(classes))
    per_class[: size - per_class.sum()] += 1
    held = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, per_class)]
    val = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), val), val


class HttpsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects to HTTPS addresses only: a download never drops to plain HTTP."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme != "https":
            raise urllib.error.URLError(f"redirected to {newurl}, which is not HTTPS")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, dest: Path, limit: int = MAX_DOWNLOAD,
             context: ssl.SSLContext | None = None) -> None:
    """Copy `url` (HTTPS only, certificate checked) into `dest`, refusing more than `limit`
    bytes -- by its Content-Length, and by counting, before anything is decompressed.
    DataError saying why if not."""
    if urllib.parse.urlsplit(url).scheme != "https":
        raise DataError(f"{url}: not an HTTPS address; bnexp downloads over HTTPS only.")
    opener = urllib.request.build_opener(HttpsOnly, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=60) as resp, open(dest, "wb") as f:
            if int(resp.headers.get("Content-Length") or 0) > limit:
                raise DataError(f"{url}: {resp.headers['Content-Length']} bytes, more than the "
                                f"{limit} a Fashion-MNIST file can be; not downloaded.")
            copied = 0
            while chunk := resp.read(1 << 16):
                copied += len(chunk)
                if copied > limit:
                    raise DataError(f"{url}: more than the {limit} bytes a Fashion-MNIST file "
                                    f"can be; download stopped.")
                f.write(chunk)
    except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts, a bad header
        raise DataError(f"{url}: download failed ({getattr(err, 'reason', err)}).") from None


def _download_official(dest: Path) -> None:
    """The four official files into `dest`, each verified before it replaces anything."""
    dest.mkdir(parents=True, exist_ok=True)
    for spec in FILES.values():
        print(f"downloading {OFFICIAL_URL}{spec.name}", flush=True)
        with replaced_atomically(dest / spec.name) as tmp:
            download(OFFICIAL_URL + spec.name, tmp)
            decompress(tmp, spec)  # verified (a temporary file: no copy kept)


def fetch() -> Path:
    """Make verified data available: already there, else the official download."""
    try:
        return load().root
    except DataError as err:
        print(f"{err}", flush=True)
    try:
        _download_official(CACHE_DIR)
    except DataError as err:
        raise DataError(f"{err} Download the four .gz files from {OFFICIAL_URL} into {CACHE_DIR} "
                        f"(or any folder, then set BNEXP_DATA or data.root to it); on Debian, "
                        f"`apt-get install dataset-fashion-mnist` (what `make data` does as root).") from None
    return load().root


def main(argv: list[str]) -> int:
    usage = f"usage: {invoked_as('python -m bnexp.data')} {{check [ROOT] | fetch}}"
    if not argv or argv[0] not in ("check", "fetch"):
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "fetch":
            root = fetch()
        else:
            root = load(argv[1] if len(argv) > 1 else None).root
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST verified in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

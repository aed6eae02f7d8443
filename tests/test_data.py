"""The real Fashion-MNIST files, and refusal of every kind of broken copy."""
import gzip
import os
import shutil

import numpy as np
import pytest

from bnexp import data, data_copies
from bnexp.errors import DataError


@pytest.fixture(autouse=True)
def no_copies(tmp_path, monkeypatch):
    """No decompressed copies (bnexp/data_copies.py) are kept where a test does not ask for
    them (`own_copies`): a folder that cannot be made. The copies of one test's dataset folder
    never answer for another's, nor replace the user's. (The module's `dataset`, made before
    this, reads the dataset as a run does.)"""
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setattr(data_copies, "COPIES_DIR", tmp_path / "not-a-folder" / "copies")


@pytest.fixture
def own_copies(tmp_path, monkeypatch):
    """A folder of decompressed copies of this test's own."""
    monkeypatch.setattr(data_copies, "COPIES_DIR", tmp_path / "copies")
    return tmp_path / "copies"


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
    with gzip.open(path, "wb", compresslevel=1) as f:  # (the content is what is checked)
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


def count_decompressions(monkeypatch) -> list:
    opened = []

    def gzip_open(path, *args):
        opened.append(path)
        return gzip.GzipFile(path, *args)
    monkeypatch.setattr(data.gzip, "open", gzip_open)
    return opened


def test_a_verified_copy_is_read_instead_of_decompressing(fashion_root, own_copies, monkeypatch):
    before = os.umask(0o002)  # a umask that lets the group write: the copies stay private
    try:
        first = data.load(fashion_root)
    finally:
        os.umask(before)
    copies = sorted(own_copies.iterdir())
    assert len(copies) == 4 and own_copies.stat().st_mode & 0o777 == 0o700
    assert not any(c.stat().st_mode & 0o022 for c in copies)  # this user's alone
    opened = count_decompressions(monkeypatch)
    again = data.load(fashion_root)
    assert opened == []
    np.testing.assert_array_equal(again.train.images, first.train.images)
    np.testing.assert_array_equal(again.test.labels, first.test.labels)


@pytest.mark.parametrize("spoil", ["one byte changed", "writable by others", "cut short"])
def test_a_copy_that_is_not_whole_or_not_private_is_not_read(fashion_root, own_copies,
                                                              monkeypatch, spoil):
    reference = data.load(fashion_root)
    copy, = own_copies.glob("t10k-images-idx3-ubyte.*")
    blob = bytearray(copy.read_bytes())
    if spoil == "one byte changed":
        blob[5000] ^= 1
        copy.write_bytes(bytes(blob))
    elif spoil == "writable by others":
        copy.chmod(0o666)
    else:
        copy.write_bytes(bytes(blob[:-1]))
    opened = count_decompressions(monkeypatch)
    again = data.load(fashion_root)
    assert [p.name for p in opened] == ["t10k-images-idx3-ubyte.gz"]  # decompressed anew
    np.testing.assert_array_equal(again.test.images, reference.test.images)
    assert data_copies.read(copy, data.FILES["test_images"].size,
                            data.FILES["test_images"].sha256) is not None  # and kept again


def test_a_file_changed_after_its_copy_was_made_is_verified_again(fashion_root, tmp_path, own_copies):
    root = copy_dataset(fashion_root, tmp_path / "fm")
    data.load(root)
    target = root / data.FILES["test_images"].name
    rewrite(target, set_byte(5000, 7))
    with pytest.raises(DataError, match="SHA-256") as err:
        data.load(root)
    assert str(target) in str(err.value)


def test_a_copies_folder_that_cannot_be_made_only_costs_time(fashion_root):
    """(`no_copies`: the folder is below a file.)"""
    assert data.load(fashion_root).train.images.shape == (60000, 28, 28)


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


# ----------------------------------------------------------------- fetching, safely

@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """A real HTTPS server on 127.0.0.1 with a self-signed certificate (openssl), and the
    client context that trusts it. /small: 100 bytes; /big and /big-unsized: one byte over
    the cap the tests give (with and without Content-Length); /to-http: a redirect to http."""
    import http.server
    import ssl
    import subprocess
    import threading

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test server's certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/to-http":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9/small")
                self.end_headers()
                return
            size = {"/small": 100, "/big": CAP + 1, "/big-unsized": CAP + 1}[self.path]
            self.send_response(200)
            if self.path != "/big-unsized":
                self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                self.wfile.write(b"x" * size)
            except OSError:  # the client stopped reading: what it should do
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ssl.create_default_context(cafile=str(cert))
    server.shutdown()


CAP = 4096


def test_the_download_is_https_only_and_capped(https_server, tmp_path):
    base, context = https_server
    data.download(f"{base}/small", tmp_path / "small", CAP, context)
    assert (tmp_path / "small").read_bytes() == b"x" * 100
    for path, said in (("/big", "more than the 4096 a Fashion-MNIST file can be"),
                       ("/big-unsized", "more than the 4096 bytes a Fashion-MNIST file can be"),
                       ("/to-http", "which is not HTTPS")):
        with pytest.raises(DataError, match=said):
            data.download(base + path, tmp_path / "out", CAP, context)
    with pytest.raises(DataError, match="not an HTTPS address"):
        data.download(base.replace("https:", "http:") + "/small", tmp_path / "out", CAP, context)
    with pytest.raises(DataError, match="download failed .*CERTIFICATE_VERIFY_FAILED"):
        data.download(f"{base}/small", tmp_path / "out", CAP)  # a certificate nobody vouches for
    assert data.OFFICIAL_URL.startswith("https://")


BOMB = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # decompressing it all ends here
from pathlib import Path
from bnexp import data
try:
    data.read_idx(Path(sys.argv[1]), data.FILES["test_labels"])
except data.DataError as err:
    print(err)
"""


def test_a_file_that_inflates_to_gigabytes_is_refused_unread(tmp_path):
    """5 MB that decompress to 1 GiB, with the labels file's header: refused after the
    official size, in a child process whose memory cap a full decompression would hit."""
    import subprocess
    import sys

    from conftest import REPO
    bomb = tmp_path / data.FILES["test_labels"].name
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write((2049).to_bytes(4, "big") + (10000).to_bytes(4, "big"))
        zeros = bytes(1 << 20)
        for _ in range(1024):
            f.write(zeros)
    done = subprocess.run([sys.executable, "-c", BOMB, str(bomb)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{bomb}: decompresses to more than the 10008 bytes of the official file" in done.stdout


def test_fetch_never_runs_apt_get(tmp_path, monkeypatch, capsys):
    """Nothing found and no download possible: fetch says what to do, and installs nothing
    itself (an apt-get first on the PATH would note that it ran)."""
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {tmp_path / 'apt-get-ran'}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("BNEXP_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-package")
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(data, "OFFICIAL_URL", "https://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.fetch()
    assert not (tmp_path / "apt-get-ran").exists()

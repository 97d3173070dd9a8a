"""Built-in data loaders and their errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from dropreg import data


def write_idx(path, array: np.ndarray, type_code: int = 0x08, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    f = tmp_path / "a.idx"
    write_idx(f, arr, compress=compress)
    np.testing.assert_array_equal(data.read_idx(f), arr)
    floats = np.linspace(-1, 1, 6).astype(np.float32).reshape(2, 3)
    write_idx(f, floats, type_code=0x0D, compress=compress)
    np.testing.assert_array_equal(data.read_idx(f), floats)


def test_read_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        data.read_idx(tmp_path / "missing.idx")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="first two bytes"):
        data.read_idx(bad)
    bad.write_bytes(b"\x00\x00\x42\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="data type"):
        data.read_idx(bad)
    bad.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(ValueError, match="malformed"):
        data.read_idx(bad)
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ValueError, match="gzip"):
        data.read_idx(bad)


def make_mnist_folder(root, n_train=5, n_test=3, compress=False):
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(root / f"{stem}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(root / f"{stem}-labels-idx1-ubyte{suffix}", labels, compress=compress)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_from_tiny_idx_files(tmp_path, compress):
    make_mnist_folder(tmp_path, compress=compress)
    ds = data.load_mnist(tmp_path, kind="fashion")
    assert ds.X_train.shape == (5, 1, 28, 28) and ds.X_test.shape == (3, 1, 28, 28)
    assert ds.X_train.dtype == torch.float32 and 0 <= ds.X_train.min() <= ds.X_train.max() <= 1
    assert ds.y_train.dtype == torch.int64 and ds.name == "fashion"


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_mnist(tmp_path)
    make_mnist_folder(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        data.load_mnist(tmp_path, kind="cifar")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        data.load_mnist(tmp_path)


def test_synthetic_regression_whitened_and_low_rank(generator):
    ds = data.synthetic_regression(200, 50, d_in=6, d_out=5, rank=2, noise=0.1, whiten=True,
                                   generator=generator)
    eye = torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(ds.X_train.T @ ds.X_train / 200, eye, atol=1e-12, rtol=0)
    assert torch.linalg.matrix_rank(ds.info["map"]) == 2
    resid = ds.y_train - ds.X_train @ ds.info["map"].T
    assert 0.05 < resid.std() < 0.2
    clean = data.synthetic_regression(10, 0, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    again = data.synthetic_regression(10, 0, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(clean.X_train, again.X_train)


def test_whiten_is_the_one_zca_whitening(generator):
    import dropreg.linear as linear

    assert linear.whiten is data.whiten and linear.Whitening is data.Whitening
    X = torch.randn(300, 5, generator=generator, dtype=torch.float64) @ torch.randn(
        5, 5, generator=generator, dtype=torch.float64)
    w = data.whiten(X, center=True)
    eye = torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(w.X.T @ w.X / 300, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(w.transform, w.transform.T, atol=1e-12, rtol=0)  # ZCA: symmetric
    # ZCA is equivariant under a permutation of the features (a Cholesky factor is not)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(data.whiten(X[:, perm], center=True).X, w.X[:, perm],
                               atol=1e-10, rtol=0)
    # synthetic_regression whitens with it
    ds = data.synthetic_regression(60, 7, d_in=4, d_out=2, rank=1, whiten=True,
                                   generator=torch.Generator().manual_seed(3))
    W = ds.info["whitening"]
    torch.testing.assert_close(W, W.T, atol=1e-12, rtol=0)
    torch.testing.assert_close(data.whiten(ds.X_train).transform,
                               torch.eye(4, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(rank=5), ValueError, "rank"),
    (dict(noise=-1.0), ValueError, "noise"),
    (dict(n_train=2, whiten=True), ValueError, "whiten"),
    (dict(n_train=3.5), TypeError, "n_train"),
    (dict(d_in=0), ValueError, "d_in"),
])
def test_synthetic_regression_errors(kwargs, err, match):
    args = dict(n_train=20, n_test=5, d_in=4, d_out=3, rank=2)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        data.synthetic_regression(**args)


def test_one_hot_labels():
    Y = data.one_hot_labels([3, 0, 2])
    assert Y.shape == (5, 3) and Y.sum(0).tolist() == [3.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="class_counts"):
        data.one_hot_labels([0, 0])
    with pytest.raises(ValueError, match=r"class_counts\[1\]"):
        data.one_hot_labels([2, -1])


def test_digits(generator):
    ds = data.load_digits_data(test_fraction=0.2, generator=generator)
    assert len(ds.X_train) + len(ds.X_test) == 1797
    assert abs(len(ds.X_test) - 0.2 * 1797) < 1
    assert ds.X_train.max() <= 1 and ds.X_train.min() >= 0
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits_data(test_fraction=1.0)


def test_sign_parity(generator):
    ds = data.sign_parity(100, 20, K=5, scale=1.5, generator=generator)
    assert ds.X_train.abs().max() <= 1.5 and ds.X_train.abs().max() > 1.0
    assert torch.equal(ds.y_train, torch.sign(ds.X_train).prod(1, keepdim=True))
    assert set(ds.y_train.flatten().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="scale"):
        data.sign_parity(10, 1, K=2, scale=0.0)
    with pytest.raises(TypeError, match="K"):
        data.sign_parity(10, 1, K=2.0)


def test_mnist1d_cache_is_written_once_and_corruption_is_repaired(tmp_path, monkeypatch):
    import mnist1d.data

    calls = []
    real = mnist1d.data.make_dataset

    def counting(args=None, template=None):
        calls.append(1)
        args.num_samples = 500  # a small set keeps the test fast; the cache logic is the same
        return real(args)

    monkeypatch.setattr(mnist1d.data, "make_dataset", counting)
    ds = data.load_mnist1d(cache_dir=tmp_path)
    assert ds.X_train.shape[1] == 40 and ds.X_train.dtype == torch.float32
    assert len(calls) == 1
    again = data.load_mnist1d(cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(ds.X_train, again.X_train)
    cache = next(tmp_path.glob("mnist1d-*.pkl"))
    raw = bytearray(cache.read_bytes())
    raw[-10] ^= 0xFF  # flip bits in the payload
    cache.write_bytes(bytes(raw))
    repaired = data.load_mnist1d(cache_dir=tmp_path)
    assert len(calls) == 2 and torch.equal(repaired.X_train, ds.X_train)
    cache.write_bytes(b"short")
    data.load_mnist1d(cache_dir=tmp_path)
    assert len(calls) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_dir_respects_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPREG_CACHE_DIR", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DROPREG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert data.cache_dir() == tmp_path / "x" / "dropreg"

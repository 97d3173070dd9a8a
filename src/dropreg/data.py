"""Built-in data: nothing is downloaded at run time.

Every loader returns a :class:`Dataset` of torch tensors with one example per row, and takes a
``generator`` where it samples:

- :func:`synthetic_regression`: low-rank linear target map plus noise, inputs optionally whitened
  (the linear-network setup of Pal et al. 2020 and their SGD-reaches-the-minimizer experiment;
  ``docs/papers/pal2020.md``, "Setup");
- :func:`one_hot_labels`: one-hot label matrices with given class counts (the labels of the
  last-layer result of Pal et al. 2020; ``docs/papers/pal2020.md``, "Last layer of a deep network");
- :func:`load_digits_data`: scikit-learn's 8x8 digits (the real-network check of that result);
- :func:`load_mnist1d`: MNIST-1D generated locally by the ``mnist1d`` package, cached on disk (the
  small-network experiments for Wei, Kakade & Ma 2020 and Zhang, Zhou & Xu 2022);
- :func:`load_mnist` / :func:`read_idx`: MNIST or Fashion-MNIST from IDX files the user already has;
- :func:`sign_parity`: the sign-parity data of Helmbold & Long (2017, Section 6;
  ``docs/papers/helmbold2017.md``, "Experiment (Section 6)").

and the one input whitening of the package, :func:`whiten` (re-exported as
``dropreg.linear.whiten``, whose closed forms assume whitened inputs).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dropreg._checks import check_int
from dropreg._io import atomic_write_bytes

__all__ = [
    "Dataset",
    "Whitening",
    "whiten",
    "synthetic_regression",
    "one_hot_labels",
    "load_digits_data",
    "load_mnist1d",
    "read_idx",
    "load_mnist",
    "sign_parity",
    "cache_dir",
]


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors (rows are examples) with a name and loader-specific facts.

    Example:
        >>> ds = Dataset(torch.zeros(5, 3), torch.zeros(5), torch.zeros(2, 3), torch.zeros(2),
        ...              "toy")
        >>> ds, ds.info
        (Dataset('toy', X_train=(5, 3), X_test=(2, 3)), {})
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, X_train={tuple(self.X_train.shape)}, "
            f"X_test={tuple(self.X_test.shape)})"
        )


@dataclass(frozen=True)
class Whitening:
    """Whitening of inputs: ``X_white = (X - mean) @ transform`` has ``X_white^T X_white / N = I``.

    Attributes:
        X: the whitened inputs ``(N, d)``.
        transform: ``Sigma^{-1/2}`` (``d x d``, symmetric).
        mean: the subtracted mean (zeros when ``center=False``).
        condition: condition number of ``Sigma``.

    Example:
        >>> X = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> w = whiten(X, center=True)
        >>> bool(torch.allclose(w.X.T @ w.X / 20, torch.eye(3, dtype=torch.float64)))
        True
        >>> bool(torch.allclose((X - w.mean) @ w.transform, w.X)), w.condition >= 1
        (True, True)
    """

    X: torch.Tensor
    transform: torch.Tensor
    mean: torch.Tensor
    condition: float


def whiten(X: torch.Tensor, *, center: bool = False, rcond: float = 1e-10) -> Whitening:
    """ZCA-whiten inputs so that ``X_w^T X_w / N = I`` exactly (``docs/papers/pal2020.md``,
    "Setup").

    The whitening assumption of the linear-network closed forms (Pal et al. 2020; Mianjy, Arora,
    Vidal 2018) is ``X^T X / N = I``. Every ``T`` with ``T^T Sigma T = I`` achieves it, and any two
    differ by a rotation ``Q`` (``T' = T Q``), which leaves the singular values of
    ``M = Y^T X_w / N`` -- and hence every closed-form value -- unchanged. This function uses the
    symmetric (ZCA) choice ``T = Sigma^{-1/2}`` (eigendecomposition, in float64): unlike a Cholesky
    factor it does not depend on the order of the features, and it is the whitening that moves
    the data least (``E||x - T x||^2`` is minimal among whitening transforms). It is the only
    whitening of the package: :func:`synthetic_regression` and
    :class:`dropreg.linear.DropBlockRegressor` use it too.

    Refuses (``ValueError``) when ``Sigma = X^T X / N`` is singular or its condition number
    exceeds ``1 / rcond``: then the end-to-end map is not identified by the data and the
    closed form's whitening assumption cannot be met (reduce the features, e.g. by PCA).

    Example:
        >>> X = torch.randn(100, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> W = whiten(X)
        >>> bool(torch.allclose(W.X.T @ W.X / 100, torch.eye(3, dtype=torch.float64)))
        True
    """
    if not isinstance(X, torch.Tensor) or X.dim() != 2:
        raise ValueError(f"X must be a 2-D tensor (N, d), got {getattr(X, 'shape', X)!r}")
    X = X.to(torch.float64)
    N, d = X.shape
    mean = X.mean(0) if center else torch.zeros(d, dtype=torch.float64)
    Xc = X - mean
    sigma = Xc.T @ Xc / N
    evals, evecs = torch.linalg.eigh(sigma)
    top = float(evals.max()) if d else 0.0
    low = float(evals.min()) if d else 0.0
    if top <= 0 or low <= rcond * top:
        rank = int((evals > rcond * max(top, 0.0)).sum())
        raise ValueError(
            f"X cannot be whitened: X^T X / N has rank {rank} < d = {d} (smallest/largest "
            f"eigenvalue {low:.3e}/{top:.3e}, rcond = {rcond}). The closed form needs "
            "whitened inputs (X^T X / N = I); reduce the features (e.g. PCA to the rank) or add "
            "examples.")
    T = (evecs / evals.sqrt()) @ evecs.T
    return Whitening(X=Xc @ T, transform=T, mean=mean, condition=top / low)


def synthetic_regression(
    n_train: int,
    n_test: int,
    d_in: int,
    d_out: int,
    rank: int,
    noise: float = 0.0,
    whiten: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """Regression data y = A x + noise with a random rank-``rank`` map A (``d_out x d_in``).

    The setup of the linear-network results of Pal et al. 2020 (``docs/papers/pal2020.md``,
    "Setup"; the SGD experiment there draws ``Y = W X + noise``):
    standard normal inputs, ``A = G_1 G_2 / sqrt(rank)`` with Gaussian ``G_1 (d_out x rank)``,
    ``G_2 (rank x d_in)``, and Gaussian noise of standard deviation ``noise``. With
    ``whiten=True`` the training inputs are ZCA-whitened by :func:`whiten` so that
    ``X^T X / n_train = I`` (exactly, up to rounding); the same transform is applied to the test
    inputs, and the targets are computed from the whitened inputs. ``info["map"]`` holds A and
    ``info["whitening"]`` the transform W (x -> W x; symmetric).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> ds = synthetic_regression(50, 10, d_in=4, d_out=3, rank=2, whiten=True, generator=g)
        >>> ds.X_train.shape, ds.y_train.shape
        (torch.Size([50, 4]), torch.Size([50, 3]))
        >>> torch.allclose(ds.X_train.T @ ds.X_train / 50, torch.eye(4, dtype=torch.float64))
        True
    """
    n_train = check_int("n_train", n_train)
    n_test = check_int("n_test", n_test, minimum=0)
    d_in = check_int("d_in", d_in)
    d_out = check_int("d_out", d_out)
    rank = check_int("rank", rank, minimum=0)
    if rank > min(d_in, d_out):
        raise ValueError(f"rank must be in [0, min(d_in, d_out)] = [0, {min(d_in, d_out)}], "
                         f"got {rank}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if whiten and n_train < d_in:
        raise ValueError(f"whiten=True needs n_train >= d_in, got n_train={n_train}, d_in={d_in}")
    kw = {"generator": generator, "dtype": dtype}
    A = torch.randn(d_out, rank, **kw) @ torch.randn(rank, d_in, **kw) / max(rank, 1) ** 0.5
    X = torch.randn(n_train + n_test, d_in, **kw)
    W = torch.eye(d_in, dtype=dtype)
    if whiten:
        W = globals()["whiten"](X[:n_train]).transform.to(dtype)  # the argument shadows whiten()
        X = X @ W
    Y = X @ A.T + noise * torch.randn(n_train + n_test, d_out, **kw)
    return Dataset(X[:n_train], Y[:n_train], X[n_train:], Y[n_train:], "synthetic-regression",
                   {"map": A, "whitening": W, "noise": noise, "rank": rank})


def one_hot_labels(class_counts: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """One-hot label matrix (N, C) with ``class_counts[c]`` rows of class c, in class order.

    ``Y^T Y = diag(class_counts)``, so the singular values of ``Y`` are ``sqrt(class_counts)``:
    the input of the last-layer closed form (``docs/papers/pal2020.md``, "Last layer of a deep
    network").

    Example:
        >>> one_hot_labels([2, 1])
        tensor([[1., 0.],
                [1., 0.],
                [0., 1.]], dtype=torch.float64)
    """
    counts = [check_int(f"class_counts[{i}]", c, minimum=0) for i, c in enumerate(class_counts)]
    if not counts or sum(counts) == 0:
        raise ValueError("class_counts must contain at least one positive count")
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return torch.nn.functional.one_hot(labels, len(counts)).to(dtype)


def _split(X: torch.Tensor, y: torch.Tensor, test_fraction: float,
           generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    perm = torch.randperm(len(X), generator=generator)
    n_test = int(round(test_fraction * len(X)))
    test, train = perm[:n_test], perm[n_test:]
    return X[train], y[train], X[test], y[test]


def load_digits_data(test_fraction: float = 0.25,
                     generator: torch.Generator | None = None) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), pixels scaled to [0, 1].

    Example:
        >>> ds = load_digits_data(generator=torch.Generator().manual_seed(0))
        >>> ds.X_train.shape[1], int(ds.y_train.max()) + 1
        (64, 10)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = torch.tensor(bunch.data / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return Dataset(*_split(X, y, test_fraction, generator), "digits", {"classes": 10})


def cache_dir() -> Path:
    """Where dropreg caches generated data: ``$DROPREG_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dropreg``, else ``~/.cache/dropreg``.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"DROPREG_CACHE_DIR": "/tmp/dropreg-cache"}):
        ...     str(cache_dir())
        '/tmp/dropreg-cache'
        >>> with mock.patch.dict(os.environ, {"DROPREG_CACHE_DIR": "", "XDG_CACHE_HOME": "/tmp/x"}):
        ...     str(cache_dir())
        '/tmp/x/dropreg'
    """
    if os.environ.get("DROPREG_CACHE_DIR"):
        return Path(os.environ["DROPREG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dropreg"


_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def _read_mnist1d_cache(path: Path) -> dict[str, Any] | None:
    """The cached arrays, or None when the file is missing or corrupt (bad checksum or shape)."""
    try:
        blob = path.read_bytes()
        digest, payload = blob[:32], blob[32:]
        if hashlib.sha256(payload).digest() != digest:
            return None
        data = pickle.loads(payload)
        if not all(k in data for k in _MNIST1D_KEYS):
            return None
        if len(data["x"]) != len(data["y"]) or len(data["x_test"]) != len(data["y_test"]):
            return None
        return data
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError):
        return None


def load_mnist1d(cache_dir: str | os.PathLike | None = None, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020): 4000 train / 1000 test sequences of length 40, 10 classes.

    Generated locally with ``mnist1d.data.make_dataset`` on first use and cached (atomic write,
    SHA-256 checked; a corrupt cache is regenerated). ``seed`` is the package's data seed.

    Example:
        >>> ds = load_mnist1d()  # doctest: +SKIP
        >>> ds.X_train.shape  # doctest: +SKIP
        torch.Size([4000, 40])
    """
    folder = Path(cache_dir) if cache_dir is not None else globals()["cache_dir"]()
    path = folder / f"mnist1d-seed{int(seed)}.pkl"
    data = _read_mnist1d_cache(path)
    if data is None:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = int(seed)
        made = make_dataset(args)
        data = {k: np.asarray(made[k]) for k in _MNIST1D_KEYS}
        payload = pickle.dumps(data, protocol=4)
        atomic_write_bytes(path, hashlib.sha256(payload).digest() + payload)
    return Dataset(
        torch.tensor(data["x"], dtype=torch.float32),
        torch.tensor(data["y"], dtype=torch.int64),
        torch.tensor(data["x_test"], dtype=torch.float32),
        torch.tensor(data["y_test"], dtype=torch.int64),
        "mnist1d",
        {"classes": 10, "cache": str(path)},
    )


_IDX_DTYPES = {
    0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, detected from its first bytes).

    Raises:
        FileNotFoundError: the path does not exist (the message names it).
        ValueError: the header is malformed or the payload does not match the header's shape.

    Example:
        >>> import tempfile, pathlib, struct
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.idx"
        >>> _ = f.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([1, 2, 3]))
        >>> read_idx(f)
        array([1, 2, 3], dtype=uint8)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip stream ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: malformed IDX header (the first two bytes must be zero)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{type_code:02x}; allowed: "
                         + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES))
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: malformed IDX header ({ndim} dimensions, {len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    payload = raw[4 + 4 * ndim:]
    if len(payload) != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes of data) but the "
                         f"file holds {len(payload)} bytes")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"IDX file not found: {root / stem} (also tried {stem}.gz)")


def load_mnist(root: str | os.PathLike, kind: str = "mnist") -> Dataset:
    """MNIST or Fashion-MNIST from the four standard IDX files (raw or ``.gz``) in ``root``.

    Nothing is downloaded: the files must already be there. Images are scaled to [0, 1] and
    returned as (N, 1, 28, 28) float32; labels as int64.

    Example:
        >>> load_mnist("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: IDX file not found: /nonexistent/train-images-idx3-ubyte ...
    """
    if kind not in ("mnist", "fashion"):
        raise ValueError(f"kind must be 'mnist' or 'fashion', got {kind!r}")
    root = Path(root)
    arrays = {}
    for split, (img, lab) in _MNIST_FILES.items():
        images = read_idx(_find_idx(root, img))
        labels = read_idx(_find_idx(root, lab))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{root}: {split} images {images.shape} and labels {labels.shape} "
                             "do not match (expected (N, H, W) and (N,))")
        arrays[split] = (
            torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 255.0,
            torch.tensor(labels, dtype=torch.int64),
        )
    return Dataset(*arrays["train"], *arrays["test"], kind, {"classes": 10, "root": str(root)})


def sign_parity(
    n_train: int,
    n_test: int,
    K: int,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """Sign-parity data of Helmbold & Long (2017, the experiment of Section 6).

    Inputs uniform in ``[-scale, scale]^K``; the label is the product of the signs of the inputs,
    in {-1, +1} (shape (N, 1)).

    Example:
        >>> ds = sign_parity(8, 4, K=3, generator=torch.Generator().manual_seed(0))
        >>> bool((ds.y_train == torch.sign(ds.X_train).prod(1, keepdim=True)).all())
        True
    """
    n_train = check_int("n_train", n_train)
    n_test = check_int("n_test", n_test, minimum=0)
    K = check_int("K", K)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    X = (2 * torch.rand(n_train + n_test, K, generator=generator, dtype=dtype) - 1) * scale
    y = torch.sign(X).prod(1, keepdim=True)
    y[y == 0] = 1.0
    return Dataset(X[:n_train], y[:n_train], X[n_train:], y[n_train:], "sign-parity",
                   {"K": K, "scale": scale})

"""Small test-bed models with dropout sites, and the word-level corpus of ``pydoc_data.topics``.

Used by the training comparison of Wei et al. 2020 (Sections 3 and 5.1, claim
``wei2020.training-lstm-pydoc``) and the benchmark.
"""

from __future__ import annotations

import re
from collections import Counter

import torch
from torch import nn


class MLP(nn.Sequential):
    """``d_in -> [Linear, activation, Dropout(p)] * depth -> Linear(d_out)``.

    Example:
        >>> MLP(40, 64, 10, p=0.4, depth=2)(torch.randn(3, 40)).shape
        torch.Size([3, 10])
    """

    def __init__(self, d_in: int, hidden: int, d_out: int, p: float = 0.5, depth: int = 2,
                 activation: type[nn.Module] = nn.ReLU) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers: list[nn.Module] = []
        width = d_in
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), activation(), nn.Dropout(p)]
            width = hidden
        layers.append(nn.Linear(width, d_out))
        super().__init__(*layers)


class WordLSTM(nn.Module):
    """Word-level LSTM language model with dropout on the embedding output, between LSTM layers
    and before the decoder (the node-dropout sites of AWD-LSTM, without DropConnect).

    Batch-first: ``(B, T)`` token ids -> ``(B, T, V)`` logits. Each LSTM layer is its own
    ``nn.LSTM`` so the dropout sites sit between layers; on CPU ``nn.LSTM`` supports the double
    backward the explicit regularizer needs.

    Example:
        >>> WordLSTM(50, 8, 16, layers=2, p=0.4)(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 50])
    """

    def __init__(self, vocab: int, emb: int = 32, hidden: int = 64, layers: int = 2,
                 p: float = 0.4, tie: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.drop_in = nn.Dropout(p)
        sizes = [emb] + [hidden] * (layers - 1) + [emb if tie else hidden]
        self.rnns = nn.ModuleList(
            nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(layers))
        self.drops = nn.ModuleList(nn.Dropout(p) for _ in range(layers))
        self.decoder = nn.Linear(sizes[-1], vocab)
        if tie:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` token ids -> ``(B, T, V)`` next-token logits.

        Example:
            >>> net = WordLSTM(20, 4, 6, layers=1, p=0.5).eval()  # eval: dropout off
            >>> x = torch.tensor([[1, 2, 3]])
            >>> torch.equal(net(x), net(x)), net(x).shape
            (True, torch.Size([1, 3, 20]))
        """
        h = self.drop_in(self.embedding(tokens))
        for rnn, drop in zip(self.rnns, self.drops):
            h = drop(rnn(h)[0])
        return self.decoder(h)


def tokenize(text: str) -> list[str]:
    """Lower-case words and single punctuation marks."""
    return re.findall(r"[a-z0-9_]+|[^\sa-z0-9_]", text.lower())


def pydoc_corpus(vocab_size: int = 2000) -> tuple[torch.Tensor, list[str]]:
    """Token ids of the text of ``pydoc_data.topics`` (ships with CPython; no download).

    Topics are concatenated in sorted key order; words outside the ``vocab_size - 1`` most frequent
    map to ``<unk>`` (id 0).

    Returns:
        ``(ids, vocabulary)`` with ``ids`` an int64 tensor.

    Example:
        >>> ids, vocab = pydoc_corpus(500)
        >>> len(vocab), vocab[0], int(ids.max()) < 500
        (500, '<unk>', True)
    """
    from pydoc_data.topics import topics

    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    words = []
    for key in sorted(topics):
        words += tokenize(topics[key]) + ["<eos>"]
    common = [w for w, _ in sorted(Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))]
    vocab = ["<unk>"] + common[: vocab_size - 1]
    index = {w: i for i, w in enumerate(vocab)}
    return torch.tensor([index.get(w, 0) for w in words], dtype=torch.long), vocab


def language_model_windows(ids: torch.Tensor, seq_len: int, n_train: int, n_test: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Non-overlapping ``(input, next-token)`` windows: the first ``n_train`` for training, the
    last ``n_test`` for testing (disjoint text).

    Example:
        >>> x, y, x_test, y_test = language_model_windows(torch.arange(21), 4, n_train=2, n_test=1)
        >>> x.tolist(), y.tolist(), x_test.tolist()
        ([[0, 1, 2, 3], [4, 5, 6, 7]], [[1, 2, 3, 4], [5, 6, 7, 8]], [[16, 17, 18, 19]])
    """
    n = (ids.numel() - 1) // seq_len
    if n_train + n_test > n:
        raise ValueError(f"n_train + n_test must be <= {n} windows of length {seq_len}, "
                         f"got {n_train + n_test}")
    x = ids[: n * seq_len].reshape(n, seq_len)
    y = ids[1: n * seq_len + 1].reshape(n, seq_len)
    return x[:n_train], y[:n_train], x[n - n_test:], y[n - n_test:]

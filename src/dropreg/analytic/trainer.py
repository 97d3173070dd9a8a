"""A small trainer for the update rules, recording clean train/test loss and accuracy per epoch."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from dropreg.analytic.losses import check_loss, per_term_loss
from dropreg.analytic.updates import UpdateRule, accumulate_gradient
from dropreg.sites import dropout_state


@dataclass(frozen=True)
class EpochRecord:
    """Clean (no-dropout) metrics after one epoch; ``accuracy`` is NaN for ``"mse"``.

    Example:
        >>> from dropreg.analytic import MLP, rules
        >>> g = torch.Generator().manual_seed(0)
        >>> X, y = torch.randn(16, 3, generator=g), torch.randint(0, 2, (16,), generator=g)
        >>> first = train(MLP(3, 8, 2, p=0.2), rules.dropout(), X, y, X, y, epochs=1,
        ...               generator=g).epochs[0]
        >>> first.epoch, 0.0 <= first.train_accuracy <= 1.0
        (0, True)
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    train_objective: float


@dataclass(frozen=True)
class TrainingHistory:
    """What :func:`train` returns: one :class:`EpochRecord` per epoch (index 0 = before training),
    the rule, the median wall-clock and thread-CPU seconds per step, and the number of steps.
    (On a shared machine the CPU time is the fair cost measure.)

    Example:
        >>> rec = [EpochRecord(e, 1.0 / (e + 1), 0.5, 2.0 - e, 0.5, 1.0) for e in range(3)]
        >>> hist = TrainingHistory("none", tuple(rec), seconds_per_step=0.01, steps=4)
        >>> hist.final.epoch, hist.best_test_loss
        (2, 0.0)
    """

    rule: str
    epochs: tuple[EpochRecord, ...]
    seconds_per_step: float
    steps: int
    cpu_seconds_per_step: float = math.nan

    @property
    def final(self) -> EpochRecord:
        """The record after the last epoch."""
        return self.epochs[-1]

    @property
    def best_test_loss(self) -> float:
        """The lowest clean test loss over the epochs (epoch 0 included)."""
        return min(e.test_loss for e in self.epochs)


@torch.no_grad()
def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             loss: str = "cross_entropy", batch_size: int = 1024) -> tuple[float, float]:
    """Clean mean loss and accuracy (NaN for mse) with every dropout site passing through.

    The model is evaluated in ``eval()`` mode (so e.g. batch-norm statistics are not updated) and
    put back in its previous mode.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
        >>> loss, acc = evaluate(net, torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
        >>> 0.0 <= acc <= 1.0
        True
    """
    check_loss(loss)
    total, correct, count = 0.0, 0.0, 0
    was_training = model.training
    model.eval()
    with dropout_state(model, "off"):
        for i in range(0, inputs.shape[0], batch_size):
            out = model(inputs[i: i + batch_size])
            t = targets[i: i + batch_size]
            terms = per_term_loss(out, t, loss)
            total += float(terms.double().sum())
            count += terms.numel()
            if loss == "cross_entropy":
                correct += float((out.argmax(-1) == t).double().sum())
    model.train(was_training)
    return total / count, (correct / count if loss == "cross_entropy" else math.nan)


def train(
    model: nn.Module, rule: UpdateRule, X_train: torch.Tensor, y_train: torch.Tensor,
    X_test: torch.Tensor, y_test: torch.Tensor, *, epochs: int = 10, batch_size: int = 32,
    lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0,
    clip_grad_norm: float | None = None, loss: str = "cross_entropy",
    generator: torch.Generator | None = None, progress: bool = False,
) -> TrainingHistory:
    """Train ``model`` in place with SGD under ``rule`` and record clean metrics per epoch.

    Args:
        model: model with dropout sites.
        rule: an :class:`~dropreg.analytic.updates.UpdateRule`.
        X_train, y_train, X_test, y_test: data; rows are examples (or token windows).
        epochs, batch_size, lr, momentum, weight_decay: SGD settings.
        clip_grad_norm: clip the total gradient norm (the LSTM code uses 0.25).
        loss: ``"cross_entropy"`` or ``"mse"``.
        generator: drives minibatch order, dropout masks, sampled labels and noise.
        progress: show a rich progress bar.

    Example:
        >>> from dropreg.analytic import MLP, rules
        >>> g = torch.Generator().manual_seed(0)
        >>> X, y = torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g)
        >>> hist = train(MLP(5, 16, 3, p=0.2), rules.dropout(2), X, y, X, y, epochs=2,
        ...              generator=g)
        >>> len(hist.epochs), hist.steps
        (3, 2)
    """
    check_loss(loss)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    n = X_train.shape[0]
    per_epoch = math.ceil(n / batch_size)

    def record(epoch: int, objective: float) -> EpochRecord:
        tl, ta = evaluate(model, X_train, y_train, loss=loss)
        vl, va = evaluate(model, X_test, y_test, loss=loss)
        return EpochRecord(epoch, tl, ta, vl, va, objective)

    model.train()
    history = [record(0, math.nan)]
    times: list[float] = []
    cpu: list[float] = []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(rule.name, total=epochs * per_epoch)
    try:
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=generator)
            seen = 0.0
            for b in range(per_epoch):
                idx = order[b * batch_size: (b + 1) * batch_size]
                t0, c0 = time.perf_counter(), time.thread_time()
                opt.zero_grad(set_to_none=True)
                seen += accumulate_gradient(model, rule, X_train[idx], y_train[idx], loss=loss,
                                            generator=generator)
                if clip_grad_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                opt.step()
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
                if bar is not None:
                    bar.advance(task)
            history.append(record(epoch, seen / per_epoch))
    finally:
        if bar is not None:
            bar.stop()
    times.sort()
    cpu.sort()
    return TrainingHistory(rule.name, tuple(history), times[len(times) // 2], len(times),
                           cpu[len(cpu) // 2])

"""Drop-rate schedules: linear warm-up of ``p`` for every dropreg layer of a model.

DropBlock is usually trained with ``p`` ramped up linearly (Ghiasi et al. 2018; mmdet's
``warmup_iters``, dropblock's ``LinearScheduler``). :class:`DropRateWarmup` does it for a whole
model at once: it finds every :class:`~dropreg.nn.DropLayer` (and optionally every
``torch.nn.Dropout``) and sets its ``p`` at each :meth:`~DropRateWarmup.step`.

Example:
    >>> from torch import nn
    >>> from dropreg.nn import DropBlock2d, Dropout, DropRateWarmup
    >>> model = nn.Sequential(DropBlock2d(0.2, 3), Dropout(0.4))
    >>> sched = DropRateWarmup(model, warmup_steps=4)
    >>> model[0].p, model[1].p
    (0.0, 0.0)
    >>> for _ in range(2):
    ...     sched.step()
    >>> model[0].p, model[1].p
    (0.1, 0.2)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dropreg._checks import check_int, check_probability
from dropreg.nn.modules import DropLayer

__all__ = ["DropRateWarmup"]


class DropRateWarmup:
    """Linear warm-up of the drop probability of every dropreg layer in ``model``.

    At step ``t`` (``0`` at construction, ``+1`` per :meth:`step`) each layer gets
    ``p_t = start + (target - start) * min(t, warmup_steps) / warmup_steps``, where ``target`` is
    ``stop`` if given, else the layer's own ``p`` at construction. After ``warmup_steps`` steps
    ``p`` stays at the target.

    Args:
        model: module whose dropreg layers are scheduled (layers found by ``model.modules()``;
            ``MaskDropout`` over a law without ``p`` is skipped).
        warmup_steps: number of steps of the ramp, int >= 0 (0 sets the target at once).
        start: ``p`` at step 0, in [0, 1].
        stop: common target ``p`` for all layers, or ``None`` to use each layer's own ``p``.
        include_torch_dropout: also schedule ``torch.nn.Dropout*`` modules.

    Raises:
        ValueError: bad ``warmup_steps``/``start``/``stop``, or no layer to schedule.

    Example:
        >>> from dropreg.nn import DropBlock1d
        >>> model = nn.Sequential(DropBlock1d(0.3, 2), nn.Dropout(0.5))
        >>> sched = DropRateWarmup(model, 10, stop=0.2, include_torch_dropout=True)
        >>> sched.targets, model[1].p
        ({'0': 0.2, '1': 0.2}, 0.0)
    """

    def __init__(
        self,
        model: nn.Module,
        warmup_steps: int,
        *,
        start: float = 0.0,
        stop: float | None = None,
        include_torch_dropout: bool = False,
    ) -> None:
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.start = check_probability("start", start)
        self.stop = None if stop is None else check_probability("stop", stop)
        self.layers: dict[str, nn.Module] = {}
        self.targets: dict[str, float] = {}
        torch_types = (nn.modules.dropout._DropoutNd,) if include_torch_dropout else ()
        for name, module in model.named_modules():
            if isinstance(module, DropLayer) or isinstance(module, torch_types):
                try:
                    p = float(module.p)
                except AttributeError:
                    continue
                self.layers[name] = module
                self.targets[name] = p if self.stop is None else self.stop
        if not self.layers:
            raise ValueError("model has no dropreg layer (DropLayer) with a drop probability p")
        self.last_step = 0
        self._apply()

    def p_at(self, step: int, target: float) -> float:
        """Drop probability at ``step`` for a layer with the given target.

        Example:
            >>> from dropreg.nn import Dropout
            >>> sched = DropRateWarmup(nn.Sequential(Dropout(0.4)), warmup_steps=4)
            >>> [sched.p_at(t, 0.4) for t in (0, 2, 4, 9)]
            [0.0, 0.2, 0.4, 0.4]
        """
        if self.warmup_steps == 0 or step >= self.warmup_steps:
            return target
        return self.start + (target - self.start) * (step / self.warmup_steps)

    def _apply(self) -> None:
        for name, module in self.layers.items():
            module.p = self.p_at(self.last_step, self.targets[name])

    def step(self) -> None:
        """Advance one step and update every layer's ``p``.

        Example:
            >>> from dropreg.nn import Dropout
            >>> model = nn.Sequential(Dropout(0.4))
            >>> sched = DropRateWarmup(model, warmup_steps=2)
            >>> sched.step(); (sched.last_step, model[0].p)
            (1, 0.2)
        """
        self.last_step += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (step, start, targets).

        Example:
            >>> from dropreg.nn import Dropout
            >>> sched = DropRateWarmup(nn.Sequential(Dropout(0.4)), warmup_steps=4)
            >>> sched.state_dict()
            {'last_step': 0, 'start': 0.0, 'targets': {'0': 0.4}, 'warmup_steps': 4}
        """
        return {"last_step": self.last_step, "start": self.start, "targets": dict(self.targets),
                "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` and set every layer's ``p`` accordingly.

        Example:
            >>> from dropreg.nn import Dropout
            >>> model = nn.Sequential(Dropout(0.4))
            >>> sched = DropRateWarmup(model, warmup_steps=4)
            >>> sched.load_state_dict({"last_step": 3, "start": 0.0, "targets": {"0": 0.4},
            ...                        "warmup_steps": 4})
            >>> round(model[0].p, 12)
            0.3
        """
        self.last_step = int(state["last_step"])
        self.start = float(state["start"])
        self.warmup_steps = int(state["warmup_steps"])
        self.targets.update({k: float(v) for k, v in state["targets"].items() if k in self.layers})
        self._apply()

    def __repr__(self) -> str:
        return (f"DropRateWarmup(layers={len(self.layers)}, warmup_steps={self.warmup_steps}, "
                f"start={self.start}, step={self.last_step})")

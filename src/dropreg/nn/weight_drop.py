"""Weight dropout of any module's weights (Merity, Keskar, Socher 2018, AWD-LSTM, Sec. 2).

:class:`WeightDrop` wraps a module and masks some of its weights, e.g. an LSTM's hidden-to-hidden
matrix ``weight_hh_l0``: in training each forward call multiplies the weight by one DropConnect
mask ``Z / (1 - p)``, ``Z`` iid Bernoulli(``1 - p``) (Wan et al. 2013), shared by the whole batch;
in eval mode it is the identity. It is built on ``torch.nn.utils.parametrize``: each wrapped weight
gets a :class:`WeightMask` parametrization, and these masks are dropout sites of kind
``"weight"`` (:mod:`dropreg.sites`), so the curvature and noise tools switch them like any other
site.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from dropreg._checks import check_probability
from dropreg.masks import Bernoulli
from dropreg.nn import _torchscript
from dropreg.nn.functional import drop_connect

__all__ = ["WeightDrop", "WeightMask"]


class WeightMask(nn.Module):
    """The parametrization of one weight under :class:`WeightDrop`: ``W * Z / (1 - p)`` in
    training (one mask per call), ``W`` in eval mode. A dropout site of kind ``"weight"``.

    Example:
        >>> m = WeightMask(0.5, generator=torch.Generator().manual_seed(0))
        >>> sorted(set(m(torch.ones(3, 3)).flatten().tolist())), m.eval()(torch.ones(1)).item()
        ([0.0, 2.0], 1.0)
    """

    is_dropout_site = True
    site_kind = "weight"
    __jit_unused_properties__ = ["law"]  # Python only; torch.jit.script compiles forward

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.generator = generator

    @property
    def law(self) -> Bernoulli:
        """The law of the mask entries, ``Bernoulli(p)``."""
        return Bernoulli(self.p)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The masked weight (the weight itself in eval mode)."""
        if torch.jit.is_scripting():
            return _torchscript.drop_connect(weight, self.p, self.training, self.generator)
        return drop_connect(weight, self.p, training=self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WeightDrop(nn.Module):
    """Wrap ``module`` and drop the entries of its weights ``weights`` with probability ``p``.

    ``torch.jit.script`` refuses it with a ``TypeError`` (parametrizations are Python
    properties, and the forward passes any arguments); the message says how to script the
    eval-mode wrapped module.

    Args:
        module: any module, e.g. ``nn.LSTM``; it is changed in place (its weights become
            parametrized) and called by this wrapper's forward.
        weights: the parameter name(s) to mask, e.g. ``"weight_hh_l0"``.
        p: drop probability of each weight entry, in [0, 1].
        generator: source of randomness of the masks.

    Attributes:
        module: the wrapped module.
        weights: the masked parameter names.

    Example:
        >>> lstm = WeightDrop(torch.nn.LSTM(3, 4, batch_first=True), "weight_hh_l0", p=0.5,
        ...                   generator=torch.Generator().manual_seed(0))
        >>> out, _ = lstm(torch.randn(2, 5, 3))
        >>> out.shape, lstm.p, lstm.law
        (torch.Size([2, 5, 4]), 0.5, Bernoulli(p=0.5))
        >>> lstm = lstm.eval()
        >>> x = torch.randn(2, 5, 3)
        >>> torch.equal(lstm(x)[0], lstm(x)[0])  # eval mode: the identity on the weights
        True
    """

    is_dropout_site = False  # the sites are its WeightMask parametrizations

    def __init__(self, module: nn.Module, weights: str | Sequence[str], p: float = 0.5, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        names = [weights] if isinstance(weights, str) else list(weights)
        if not names:
            raise ValueError("weights must name at least one parameter of module, got none")
        own = dict(module.named_parameters(recurse=False))
        for name in names:
            if name not in own:
                raise ValueError(f"weights: {type(module).__name__} has no parameter {name!r}; "
                                 f"it has {sorted(own)}")
        p = check_probability("p", p)
        self.module = module
        self.weights = tuple(names)
        for name in names:
            parametrize.register_parametrization(module, name, WeightMask(p, generator=generator),
                                                 unsafe=True)

    def __prepare_scriptable__(self) -> WeightDrop:
        """Refuse ``torch.jit.script`` with the reason (torch calls this hook on every module
        it scripts, submodules included)."""
        raise TypeError(
            "WeightDrop cannot be compiled by torch.jit.script: it masks the wrapped module's "
            "weights through torch.nn.utils.parametrize (Python properties, which TorchScript "
            "does not compile) and passes any arguments (*args, **kwargs) to it. In eval mode it "
            "is the wrapped module with its own weights: to script that, call m.eval(), then "
            "torch.nn.utils.parametrize.remove_parametrizations(m.module, name) for each name in "
            "m.weights, and script m.module")

    def masks(self) -> list[WeightMask]:
        """The :class:`WeightMask` of each masked weight, in the order of :attr:`weights`."""
        return [self.module.parametrizations[name][0] for name in self.weights]

    @property
    def p(self) -> float:
        """The drop probability (of every masked weight)."""
        return self.masks()[0].p

    @p.setter
    def p(self, value: float) -> None:
        value = check_probability("p", value)
        for m in self.masks():
            m.p = value

    @property
    def law(self) -> Bernoulli:
        """The law of the mask entries, ``Bernoulli(p)``."""
        return Bernoulli(self.p)

    def forward(self, *args, **kwargs):
        """The wrapped module's forward with freshly masked weights (one mask per call)."""
        with parametrize.cached():  # one mask per weight and call, however often it is read
            if isinstance(self.module, nn.RNNBase):
                # RNNs read a cached list of their weights: rebuild it so the masks take effect
                self.module._init_flat_weights()
            return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"weights={list(self.weights)}, p={self.p}"

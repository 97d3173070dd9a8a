"""Claims of Zhang, Zhou, Xu 2022 (dropout: flatness of solution and noise structure).

- :mod:`.runs` -- the trained runs (1-D regression, MNIST-1D MLPs, SGD trajectories) as frozen
  dataclasses built from settings and a generator;
- :mod:`.claims` -- the claims: get runs, measure, return an Outcome whose ``details`` hold every
  number;
- :mod:`.figures` -- one drawer per claim, reading only the stored ``details``.

The paper's ``p`` is the KEEP probability; here ``p`` is the drop probability (``nn.Dropout``).
"""

from dropreg.experiments.zhang2022 import claims  # noqa: F401  (registers the claims)

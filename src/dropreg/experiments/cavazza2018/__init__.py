"""Claims of Cavazza et al. 2018 (Dropout as a low-rank regularizer for matrix factorization).

- :mod:`.claims` -- the claims: measure, return an Outcome whose ``details`` hold every number;
- :mod:`.figures` -- one drawer per claim, reading only the stored ``details``.
"""

from dropreg.experiments.cavazza2018 import claims  # noqa: F401  (registers the claims)

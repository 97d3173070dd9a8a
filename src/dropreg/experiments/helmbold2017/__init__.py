"""Claims of Helmbold & Long 2017 (Surprising properties of dropout in deep networks, COLT).

- :mod:`.runs` -- the trained runs (sign-parity SGD of Section 6, weight-decay minimisers of
  Theorem 7): pure functions of settings and a generator;
- :mod:`.claims` -- the claims: measure, return an Outcome whose ``details`` hold every number;
- :mod:`.figures` -- one drawer per claim, reading only the stored ``details``.
"""

from dropreg.experiments.helmbold2017 import claims  # noqa: F401  (registers the claims)

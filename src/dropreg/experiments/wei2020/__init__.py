"""Claims of Wei, Kakade, Ma 2020 (The Implicit and Explicit Regularization Effects of Dropout).

- :mod:`.runs` -- test beds, trained nets and the measurements they feed (pure functions of
  settings and a generator);
- :mod:`.claims` -- the claims: measure, return an Outcome whose ``details`` hold every number;
- :mod:`.figures` -- one drawer per claim, reading only the stored ``details``.
"""

from dropreg.experiments.wei2020 import claims  # noqa: F401  (registers the claims)

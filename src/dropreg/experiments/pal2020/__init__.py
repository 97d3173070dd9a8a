"""Claims of Pal, Lane, Vidal, Haeffele 2020 (On the Regularization Properties of Structured
Dropout).

- :mod:`.runs` -- the regression problems, SGD and last-layer training runs;
- :mod:`.claims` -- the claims;
- :mod:`.figures` -- one drawer per claim, reading only the stored ``details``.
"""

from dropreg.experiments.pal2020 import claims  # noqa: F401  (registers the claims)

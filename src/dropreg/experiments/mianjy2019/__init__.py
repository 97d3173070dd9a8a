"""Claims of Mianjy, Arora 2019 (On Dropout and Nuclear Norm Regularization).

- :mod:`.claims` -- the claims; :mod:`.figures` -- one drawer per claim (stored ``details`` only).
"""

from dropreg.experiments.mianjy2019 import claims  # noqa: F401  (registers the claims)

"""Claims of Mianjy, Arora, Vidal 2018 (On the Implicit Bias of Dropout).

- :mod:`.claims` -- the claims; :mod:`.figures` -- one drawer per claim (stored ``details`` only).
"""

from dropreg.experiments.mianjy2018 import claims  # noqa: F401  (registers the claims)

"""Claims about dropreg's own layers (DropBlock2d drops exactly the requested fraction).

- :mod:`.runs` -- the peers' seeding rules (exact) and the sampled drop fraction of dropreg;
- :mod:`.claims` -- the claims: measure, return an Outcome whose ``details`` hold every number;
- :mod:`.figures` -- one drawer per claim, reading only the stored ``details``.

``ANCHOR_SETTINGS``, ``peer_seed_rule`` and ``peer_expected_drop_fraction`` are re-exported here
(``benchmarks/bench_layers.py`` imports them from this package).
"""

from dropreg.experiments.dropreg_layers import claims  # noqa: F401  (registers the claims)
from dropreg.experiments.dropreg_layers.runs import (
    ANCHOR_SETTINGS,
    PEER_RULES,
    measure_dropreg_drop_fraction,
    peer_expected_drop_fraction,
    peer_seed_rule,
)

__all__ = ["ANCHOR_SETTINGS", "PEER_RULES", "measure_dropreg_drop_fraction",
           "peer_expected_drop_fraction", "peer_seed_rule"]

"""``python -m dropreg`` runs the ``dropreg`` command."""

import sys

from dropreg.cli import main

sys.exit(main())

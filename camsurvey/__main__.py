"""``python -m camsurvey ...``: the same as the ``camsurvey`` command (:mod:`camsurvey.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

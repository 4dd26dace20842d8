"""``python -m lnpt``: the ``lnpt`` command line, for environments where the script is not on
PATH (a venv that is not activated, a subprocess started with ``sys.executable``)."""
import sys

from .cli import main

sys.exit(main())

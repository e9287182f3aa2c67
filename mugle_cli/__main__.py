"""``python -m mugle_cli``: the same as the ``mugle`` command."""

import sys

from mugle_cli.main import main

sys.exit(main())

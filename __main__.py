"""``python -m framestream``: the same as the ``framestream`` command."""

import sys

from .cli import main

sys.exit(main())

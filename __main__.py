"""``python -m framestream``: the same as the ``framestream`` command."""

import sys

from .launch import main

sys.exit(main())

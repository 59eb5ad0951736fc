"""``python -m rtms_fast`` is the ``rtms-fast`` command."""

from __future__ import annotations

import sys

from rtms_fast.cli import main

sys.exit(main())

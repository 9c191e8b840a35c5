"""``python -m omni``: the same command as ``omni`` (its CLI lives with the flows)."""
import sys

from flows.cli import main

sys.exit(main())

"""``python -m asgiri module:app``."""

from .cli import main

raise SystemExit(main())

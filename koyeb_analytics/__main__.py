"""``python -m koyeb_analytics``: the command line."""

from .cli import main

raise SystemExit(main())

"""``python -m mobius_rpc`` is the ``mobius`` command."""

from .cli import main

raise SystemExit(main())

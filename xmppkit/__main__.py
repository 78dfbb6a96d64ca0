"""``python -m xmppkit`` is the ``xmppkit`` command."""

from .cli import main

raise SystemExit(main())

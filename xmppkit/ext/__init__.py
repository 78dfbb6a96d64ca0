"""Protocol extensions, each a :class:`~xmppkit.service.Service` with typed payloads.

Import the one you need, e.g. ``from xmppkit.ext.disco import DiscoClient``; see
``docs/services.md`` and the page of each extension.
"""

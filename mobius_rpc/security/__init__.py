"""Security: who is calling, what they may do, and the record of what they did.

Layered above ``server`` and ``client`` (and beside ``storage``): the
transports carry an opaque principal slot in each message's
``TransportContext``; this package fills it (authentication) and decides on
it (policy), and the server's middleware chain is where it takes part in
every request.
"""

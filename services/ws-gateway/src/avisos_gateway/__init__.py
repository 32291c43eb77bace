"""The Avisos WebSocket gateway: holds browser connections and pushes each user's
notifications the moment they are committed.

* :mod:`avisos_gateway.settings`: configuration (``AVISOS_*`` environment variables).
* :mod:`avisos_gateway.protocol`: the versioned JSON envelope and close codes
  (docs/realtime-protocol.md).
* :mod:`avisos_gateway.tickets`: verification of the single-use connection tickets.
* :mod:`avisos_gateway.store`: read-only PostgreSQL queries (replay, counts, user state).
* :mod:`avisos_gateway.connection`: per-connection state and the non-blocking write path.
* :mod:`avisos_gateway.hub`: which connections this instance holds, by user.
* :mod:`avisos_gateway.server`: the websockets server, handshake checks, message loop.
* :mod:`avisos_gateway.bus`: the consumer of this instance's exclusive realtime queue.
"""

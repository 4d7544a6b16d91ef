"""carlinkd.sync: store-and-forward cloud sync over WebSockets (docs/protocol.md).

``protocol`` wire format, ``session`` the pure client state machine and backoff, ``outbox`` and
``inbound`` the durable queues on ``db``, ``client`` the websockets adapter, ``service`` the
daemon-side hub adapter, ``cli`` the ``carlinkd cloud`` commands.
"""

"""The durable local store: one SQLite database (aiosqlite, WAL) in the state directory.

``carlinkd.store.db.Store`` holds alert/DTC history, odometer samples, the service history
chain and the sync outbox. Import it from there: this package stays import-light because
carlinkd.config imports its settings.
"""

"""The durable local store: one SQLite database (aiosqlite, WAL) in the state directory.

``carlinkd.store.db.Store`` holds alert/DTC history, odometer samples and the service history
chain. Import it from there: this package stays import-light because carlinkd.settings imports
its settings. The cloud outbox is carlinkd/sync/outbox.py (its own ``sync.db``).
"""

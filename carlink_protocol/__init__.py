"""What the car and the cloud share: the wire protocol, the service-record chain and its
verifier, great-circle distance, and the error root both sides raise from.

Depends on nothing of the daemon (``carlinkd``) or the backend (``carlink_cloud``); both
depend on it. docs/protocol.md describes the wire format this package implements.
"""

"""The demo: the reference backend, N simulated cars and their daemons in one process, with a
live view and scripted voice exchanges (``carlinkd demo``, ``carlink-demo``).

It depends on the daemon (``carlinkd``), the simulator (``carlink_sim``) and the backend
(``carlink_cloud``); none of them depends on it.
"""

"""Sans-I/O protocol layer: bytes in, events out; events in, bytes out.

Nothing here touches sockets, event loops or time.  Each wire protocol is a
connection object that the ``server`` layer feeds with received bytes and
asks for bytes to write, so every protocol rule can be tested without a
network.
"""

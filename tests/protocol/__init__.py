"""Sans-I/O unit tests: bytes fed straight to the ``protocol/`` state machines, no sockets."""

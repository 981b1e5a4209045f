"""What tests are built from: servers on port 0 (``servers``), raw and real clients per protocol,
TLS material, log capture and subprocess helpers.  Nothing here is a test.
"""

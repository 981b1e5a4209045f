"""Helpers several test modules share (measuring a server process, bystander clients)."""

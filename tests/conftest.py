"""Fixtures every test folder shares; the code behind them lives in ``tests/support``."""

from tests.support.tls import cert_files, pems

__all__ = ["cert_files", "pems"]

"""The command line and configuration: options, config files and environment, the README
and migration guide run as written, and ``make demo``.
"""

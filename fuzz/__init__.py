"""Coverage-guided fuzzing of the sans-I/O parsers in ``asgiri.protocol``.

Each module of :mod:`fuzz.targets` drives one parser with one input and checks
invariants, not just "no exception": the only errors are the documented ones
(an HTTP status, a GOAWAY or RST_STREAM code, a WebSocket close code), nothing
buffers without bound, a state machine that reported a fatal error accepts
nothing more, and input cut into reads at random points gives what one read
gives.  A broken invariant raises :class:`fuzz.invariants.Violation`.

``python -m fuzz`` runs the targets under libFuzzer (atheris), replays their
corpora and regression inputs, and records new seeds from the test suite;
docs/fuzzing.md tells how.
"""

"""HPACK (RFC 7541 sections 2-6) as the server decodes it; errors are COMPRESSION_ERROR.

Field blocks are built representation by representation (``hpack_*``), so
each case sends exactly the encoding it names.  The app echoes ``x-*`` and
``user-agent`` fields back as ``echo-<name>``, which shows what the server
decoded.
"""

from __future__ import annotations

import pytest
from hpack.table import HeaderTable
from hyperframe.frame import ContinuationFrame, HeadersFrame

from .driver import (
    ErrorCodes,
    RawH2,
    hpack_indexed,
    hpack_literal,
    hpack_size_update,
    hpack_string,
    huffman,
    huffman_bits,
)

E = ErrorCodes


def _static_index(name: bytes, value: bytes = b"") -> int:
    for i, entry in enumerate(HeaderTable.STATIC_TABLE, 1):
        if entry == (name, value):
            return i
    raise AssertionError(name)


USER_AGENT = _static_index(b"user-agent")
#: :method GET, :scheme http, :path /, :authority localhost (not indexed).
BASE = hpack_indexed(2) + hpack_indexed(6) + hpack_indexed(4) + hpack_literal(1, b"localhost")
FIRST_DYNAMIC = len(HeaderTable.STATIC_TABLE) + 1


def _send(conn: RawH2, stream_id: int, block: bytes) -> None:
    conn.send(HeadersFrame(stream_id, block, flags=["END_STREAM", "END_HEADERS"]))


def _echo(port: int, block: bytes, name: bytes) -> bytes | None:
    with RawH2(port) as conn:
        conn.handshake()
        _send(conn, 1, block)
        ex = conn.expect_response(1)
        assert ex.status == 200
        return ex.get(b"echo-" + name)


# ---------------------------------------------------------------- representations (generic 5)


def test_6_1_indexed_field(port: int) -> None:
    """h2spec generic 5/1: static-table entries, including a full field (accept-encoding)."""
    block = BASE + hpack_indexed(_static_index(b"accept-encoding", b"gzip, deflate"))
    with RawH2(port) as conn:
        conn.handshake()
        _send(conn, 1, block)
        assert conn.expect_response(1).status == 200


@pytest.mark.parametrize("kind", ["incremental", "without", "never"])
@pytest.mark.parametrize("indexed_name", [True, False], ids=["indexed-name", "new-name"])
@pytest.mark.parametrize("huffman_coded", [False, True], ids=["plain", "huffman"])
def test_6_2_literal_fields(port: int, kind: str, indexed_name: bool, huffman_coded: bool) -> None:
    """h2spec generic 5/2-13: every literal representation, Huffman-coded or not."""
    if indexed_name:
        field = hpack_literal(USER_AGENT, b"h2spec/2.0", kind=kind, huffman_coded=huffman_coded)
        assert _echo(port, BASE + field, b"user-agent") == b"h2spec/2.0"
    else:
        field = hpack_literal(b"x-test", b"value-1", kind=kind, huffman_coded=huffman_coded)
        assert _echo(port, BASE + field, b"x-test") == b"value-1"


@pytest.mark.parametrize("sizes", [[0], [2048], [4096], [0, 4096], [1024, 2048, 100]])
def test_6_3_dynamic_table_size_updates(port: int, sizes: list[int]) -> None:
    """h2spec generic 5/14-15: one or more size updates at the start of a block."""
    block = b"".join(hpack_size_update(size) for size in sizes) + BASE
    with RawH2(port) as conn:
        conn.handshake()
        _send(conn, 1, block)
        assert conn.expect_response(1).status == 200


def test_2_3_dynamic_table_is_kept_across_blocks(port: int) -> None:
    """An entry added by one request's block is indexed by the next ones."""
    with RawH2(port) as conn:
        conn.handshake()
        _send(conn, 1, BASE + hpack_literal(b"x-test", b"dynamic", kind="incremental"))
        assert conn.expect_response(1).get(b"echo-x-test") == b"dynamic"
        _send(conn, 3, BASE + hpack_indexed(FIRST_DYNAMIC))
        assert conn.expect_response(3).get(b"echo-x-test") == b"dynamic"
        _send(conn, 5, BASE + hpack_literal(FIRST_DYNAMIC, b"new value"))
        assert conn.expect_response(5).get(b"echo-x-test") == b"new value"


def test_2_3_dynamic_table_order(port: int) -> None:
    """The newest entry has the lowest dynamic index (RFC 7541 2.3.3)."""
    with RawH2(port) as conn:
        conn.handshake()
        fields = hpack_literal(b"x-a", b"first", kind="incremental")
        fields += hpack_literal(b"x-b", b"second", kind="incremental")
        _send(conn, 1, BASE + fields)
        conn.expect_response(1)
        _send(conn, 3, BASE + hpack_indexed(FIRST_DYNAMIC) + hpack_indexed(FIRST_DYNAMIC + 1))
        ex = conn.expect_response(3)
        assert (ex.get(b"echo-x-b"), ex.get(b"echo-x-a")) == (b"second", b"first")


def test_6_3_size_update_evicts(port: int) -> None:
    """A size update to 0 empties the dynamic table: its old index is then invalid."""
    with RawH2(port) as conn:
        conn.handshake()
        _send(conn, 1, BASE + hpack_literal(b"x-test", b"dynamic", kind="incremental"))
        conn.expect_response(1)
        _send(conn, 3, hpack_size_update(0) + hpack_size_update(4096) + BASE)
        conn.expect_response(3)
        _send(conn, 5, BASE + hpack_indexed(FIRST_DYNAMIC))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


def test_4_4_entry_larger_than_table_empties_it(port: int) -> None:
    """RFC 7541 4.4: adding an entry bigger than the table leaves the table empty."""
    with RawH2(port) as conn:
        conn.handshake()
        block = hpack_size_update(64) + BASE
        block += hpack_literal(b"x-small", b"s", kind="incremental")
        block += hpack_literal(b"x-test", b"v" * 100, kind="incremental")
        _send(conn, 1, block)
        assert conn.expect_response(1).get(b"echo-x-test") == b"v" * 100
        _send(conn, 3, BASE + hpack_indexed(FIRST_DYNAMIC))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


def test_block_split_across_continuation_with_size_update(port: int) -> None:
    block = hpack_size_update(1000) + BASE + hpack_literal(b"x-test", b"split", huffman_coded=True)
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, block[:1], flags=["END_STREAM"]),
            ContinuationFrame(1, block[1:7]),
            ContinuationFrame(1, block[7:], flags=["END_HEADERS"]),
        )
        assert conn.expect_response(1).get(b"echo-x-test") == b"split"


# ---------------------------------------------------------------- decoding errors


def _zero_padded() -> bytes:
    """A Huffman string whose padding (1 to 4 bits) is zeros instead of ones."""
    for candidate in (b"x-test", b"value", b"abc", b"hello", b"zz", b"q"):
        bits, nbits = huffman_bits(candidate)
        pad = -nbits % 8
        if 1 <= pad <= 4:
            return (bits << pad).to_bytes((nbits + pad) // 8, "big")
    raise AssertionError("no candidate with 1-4 bits of padding")


def _with_eos() -> bytes:
    bits, nbits = huffman_bits(b"ab", eos_after=1)
    pad = -nbits % 8
    return ((bits << pad) | ((1 << pad) - 1)).to_bytes((nbits + pad) // 8, "big")


DECODING_ERRORS = {
    # h2spec hpack 2.3.3/1: index beyond static + dynamic table.
    "indexed-out-of-range": BASE + hpack_indexed(70),
    "indexed-far-out-of-range": BASE + hpack_indexed(2**20),
    # h2spec hpack 2.3.3/2: literal whose name index is out of range.
    "name-index-out-of-range": BASE + hpack_literal(70, b"x", kind="incremental"),
    "name-index-out-of-range-never": BASE + hpack_literal(70, b"x", kind="never"),
    # h2spec hpack 6.1/1: index 0 is not used.
    "index-zero": BASE + b"\x80",
    # h2spec hpack 4.2/1: size update after a field.
    "size-update-at-end": BASE + hpack_size_update(0),
    "size-update-between-fields": hpack_indexed(2) + hpack_size_update(100) + BASE[1:],
    # h2spec hpack 6.3/1: size update above SETTINGS_HEADER_TABLE_SIZE (4096).
    "size-update-too-large": hpack_size_update(4097) + BASE,
    # h2spec hpack 5.2/1-3: Huffman padding > 7 bits, zero padding, EOS inside.
    "huffman-padding-too-long": BASE
    + b"\x00"
    + hpack_string(b"x-test", huffman_coded=True)
    + hpack_string(b"", huffman_coded=True, raw=huffman(b"value") + b"\xff"),
    "huffman-zero-padding": BASE
    + b"\x00"
    + hpack_string(b"x-test")
    + hpack_string(b"", huffman_coded=True, raw=_zero_padded()),
    "huffman-eos": BASE
    + b"\x00"
    + hpack_string(b"x-test")
    + hpack_string(b"", huffman_coded=True, raw=_with_eos()),
    # Strings and integers cut short, or longer than any implementation limit.
    "string-longer-than-block": BASE + b"\x00" + hpack_string(b"x-test") + b"\x0avalue",
    "integer-truncated": BASE + b"\xff",
    "integer-too-long": BASE + b"\xff" + b"\x80" * 12 + b"\x01",
    "literal-missing-value": BASE + b"\x00" + hpack_string(b"x-test"),
}


@pytest.mark.parametrize("block", list(DECODING_ERRORS.values()), ids=list(DECODING_ERRORS))
def test_decoding_error_is_compression_error(port: int, block: bytes) -> None:
    """RFC 9113 4.3: a field block that cannot be decoded -> COMPRESSION_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        _send(conn, 1, block)
        conn.expect_connection_error(E.COMPRESSION_ERROR)


def test_decoding_error_after_a_good_request(port: int) -> None:
    """The error ends the connection; GOAWAY still names the stream that was served."""
    with RawH2(port) as conn:
        conn.handshake()
        _send(conn, 1, BASE)
        conn.expect_response(1)
        _send(conn, 3, BASE + hpack_indexed(99))
        goaway = conn.expect_connection_error(E.COMPRESSION_ERROR)
        assert goaway.last_stream_id == 1


def test_decoding_error_in_trailers(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        head = hpack_indexed(3) + hpack_indexed(6) + hpack_literal(4, b"/echo") + BASE[3:]
        conn.send(HeadersFrame(1, head, flags=["END_HEADERS"]))
        conn.send(HeadersFrame(1, hpack_indexed(99), flags=["END_STREAM", "END_HEADERS"]))
        conn.expect_connection_error(E.COMPRESSION_ERROR)

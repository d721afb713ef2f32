"""Lines of a log: how bytes are cut into lines, and how much is read at once. No Apache Beam here,
so the CLI can name these defaults without importing it."""
from __future__ import annotations

CHUNK_BYTES = 8 << 20          # bytes of log per chunk of work (transforms.chunks)
FINGERPRINT_BYTES = 64 << 10   # an input is identified by its first 64 KiB (transforms.chunks)
GZIP_MAGIC = b"\x1f\x8b"
# Lines longer than this are rejected by length before any regex sees them (nginx's
# large_client_header_buffers default is 4 x 8 KiB; Apache's LimitRequestLine is 8190 bytes).
MAX_LINE_BYTES = 64 << 10
TOO_LONG = f"line longer than {MAX_LINE_BYTES} bytes"   # the reject reason


def split_lines(payload: bytes) -> list[bytes]:
    """A message's lines: LF ends a line (a final one is optional) and the CR of a CRLF is dropped.
    A blank line is a line too, and so is an empty message: parsers reject them, so every line is
    accounted for."""
    lines = payload.split(b"\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def text_lines(data: bytes, strip_bom: bool = False) -> list[str]:
    """Physical lines as the parsers count them (LF only; CR of CRLF removed), decoded as UTF-8
    with invalid bytes replaced; `strip_bom`: drop a byte-order mark at the start."""
    text = data.decode("utf-8", "replace")
    if strip_bom and text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if text.endswith("\n") or not text:
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def complete_lines(data: bytes) -> bytes:
    """The prefix of data that ends with its last newline (a partial last line waits)."""
    cut = data.rfind(b"\n")
    return data[:cut + 1] if cut >= 0 else b""

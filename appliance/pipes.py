"""Messages over a helper process's pipes, and the helper's end.

The appliance moves interpreter-bound work out of the serving process into helpers it starts
with ``python -m`` (compaction's :mod:`appliance.events.compaction_build`, the PDF exporter's
:mod:`plugins.pdf_process`). Both speak the same framing on the helper's stdin and stdout: a
message is its length (8 bytes, big-endian) and then its bytes. A helper leaves when its
input ends, so the server ends one by closing that pipe (:func:`end_helper`).
"""

from __future__ import annotations

import contextlib
import struct
import subprocess

LENGTH = struct.Struct(">Q")


def send_message(stream, data: bytes) -> None:
    """Write one message (its length, then ``data``) and flush it."""
    stream.write(LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_exactly(stream, size: int) -> bytes:
    """``size`` bytes of ``stream``; EOFError when it ends first."""
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("a cut message")
    return data


def read_message(stream) -> bytes:
    """The next message's bytes; EOFError when the stream has ended (at a message's start or in it)."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        raise EOFError("no message")
    return read_exactly(stream, LENGTH.unpack(head)[0])


def end_helper(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close the helper's input (it leaves at its end), wait for it (killed after
    ``timeout`` seconds) and close its output."""
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()

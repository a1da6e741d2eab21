"""Messages over a helper process's pipes, and the helper's end.

The appliance moves interpreter-bound work out of the serving process into helpers it starts
with ``python -m`` (compaction's :mod:`appliance.events.compaction_build`, the PDF exporter's
:mod:`plugins.pdf_process`). Both speak the same framing on the helper's stdin and stdout: a
message is its length (8 bytes, big-endian) and then its bytes. A helper leaves when its
input ends, so the server ends one by closing that pipe (:func:`end_helper`), and both
begin the same way (:func:`helper_pipes`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys

LENGTH = struct.Struct(">Q")
#: how much lower a helper's scheduling priority is than the server's (``nice``)
HELPER_NICENESS = 10


def helper_pipes():
    """In a helper, at its start: ``(requests, answers)``, its input and its answers' own
    descriptor (stdout moved there, so a stray print goes to stderr instead). A stop signal
    sent to the server's process group is the server's to handle (the helper leaves when
    its input ends, or the server dies), and the helper runs :data:`HELPER_NICENESS` lower:
    on a small server the serving process's threads (the tracker's requests, the
    dashboard's) have the processor first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(HELPER_NICENESS)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return sys.stdin.buffer, answers


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

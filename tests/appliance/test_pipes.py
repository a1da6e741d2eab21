"""The helpers' framing: a message comes back as it was sent, a stream that ends at a
message's start or inside one says so (EOFError, never a short message), and a helper is
ended by closing its input, or killed when it does not leave."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from appliance.pipes import LENGTH, end_helper, read_message, send_message


def test_messages_come_back_as_sent_and_a_cut_one_is_an_end():
    stream = io.BytesIO()
    for data in (b"", b"one", bytes(range(256)) * 300):
        send_message(stream, data)
    stream.seek(0)
    assert [read_message(stream) for _ in range(3)] == [b"", b"one", bytes(range(256)) * 300]
    with pytest.raises(EOFError):
        read_message(stream)  # the end, at a message's start
    cut = io.BytesIO(LENGTH.pack(10) + b"short")
    with pytest.raises(EOFError):
        read_message(cut)  # the end inside a message
    with pytest.raises(EOFError):
        read_message(io.BytesIO(b"\x00\x00"))  # inside the length


def test_a_helper_leaves_when_its_input_closes_and_is_killed_when_it_does_not():
    leaves = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    end_helper(leaves)
    assert leaves.returncode == 0 and leaves.stdout.closed
    stays = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    end_helper(stays, timeout=0.5)
    assert stays.returncode == -9  # killed

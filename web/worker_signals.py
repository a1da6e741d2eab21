"""The served worker stops on granian's word alone: SIGTERM from its main process, not SIGINT.

Ctrl-C in a terminal (and ``kill -INT`` to a process group, as the tests and benchmarks stop
a server) sends SIGINT to granian's main process *and* to its worker. The main process then
stops the worker with SIGTERM, so the worker got two stop signals a moment apart. With
granian 2.8.9 that left the worker stuck in granian's own signal handler before its shutdown
began in 4 of ~66 group SIGINTs here. The main process then killed it after
``--workers-kill-timeout`` (8 s) without the appliance's close: no final fold and no
checkpoint of the open day, though nothing acknowledged was lost. SIGTERM alone, as ``docker
stop`` sends it, never stuck (0 of 20). So the worker ignores SIGINT, and its one stop signal
is the SIGTERM its main process sends (0 stuck of 90 group SIGINTs since).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading


def leave_interrupts_to_the_supervisor() -> None:
    """Ignore SIGINT in this process (granian's worker), keeping its SIGTERM handler.

    A Litestar start-up hook: it runs on the event loop after granian installed its
    handlers. Outside the main thread (an app served some other way) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(RuntimeError, NotImplementedError):
        # granian's handler on the loop (where the loop has none, signal.signal below replaces it)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

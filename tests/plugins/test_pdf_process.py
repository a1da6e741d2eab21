"""The PDF helper processes: the PDF a helper answers is the one the server would have laid
out, consecutive exports share a warm helper (at a lower priority), an idle one ends, renders at once take one each,
a helper killed while idle is replaced, one that cannot answer leaves the server to lay the
document out itself, a render that fails in a helper is the caller's error while the helper
serves on, and the server's process never imports weasyprint.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.pipes import HELPER_NICENESS
from plugins import pdf_export, pdf_process
from plugins.pdf_export import render_document, render_pdf, report_html
from plugins.pdf_process import HelperFailed, PdfHelpers, RenderFailed
from tests.plugins.test_pdf_export import everything_report, pdf_pages, report

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def helpers():
    pool = PdfHelpers(idle_s=60.0)
    yield pool
    pool.close()


def laid_out_here(document: str) -> bytes:
    stream = io.BytesIO()
    render_document(document, stream)
    return stream.getvalue()


def test_a_helper_answers_the_pdf_the_server_would_have_laid_out(helpers):
    document = report_html(everything_report())
    assert helpers.render(document) == laid_out_here(document)
    again = report_html(report(site="again.example", page="/again"))
    assert "/again/0" in pdf_pages(helpers.render(again))[0]
    assert helpers.started == 1 and helpers.renders == 2 and len(helpers) == 1  # one warm helper served both
    # at a lower scheduling priority than the server's: the tracker has the cores first
    helper = helpers._idle[0].process.pid
    assert os.getpriority(os.PRIO_PROCESS, helper) == os.getpriority(os.PRIO_PROCESS, 0) + HELPER_NICENESS


def test_a_helper_no_export_used_for_its_idle_time_ends():
    pool = PdfHelpers(idle_s=0.3)
    try:
        pool.render(report_html(report()))
        process = pool._idle[0].process
        assert wait_until(lambda: len(pool) == 0 and process.poll() is not None)
        assert process.returncode == 0  # it left when its input closed
        assert pdf_pages(pool.render(report_html(report(page="/next"))))  # the next export starts another
        assert pool.started == 2
    finally:
        pool.close()


def test_renders_at_the_same_time_take_a_helper_each(helpers):
    lent = helpers._borrow()  # a render under way holds the first helper
    try:
        assert "/pricing/0" in pdf_pages(helpers.render(report_html(report())))[0]
        assert helpers.started == 2 and len(helpers) == 1  # the second render got a helper of its own
    finally:
        helpers._give_back(lent)
    assert len(helpers) == 2

    # two exports at once, on the two warm helpers: each answer is its own document's
    documents = [report_html(report(site=f"site{n}.example", page=f"/p{n}", rows=40)) for n in range(2)]
    answers: dict[int, bytes] = {}
    ready = threading.Barrier(2)

    def export(n: int) -> None:
        ready.wait()
        answers[n] = helpers.render(documents[n])

    threads = [threading.Thread(target=export, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in range(2):
        assert f"/p{n}/0" in pdf_pages(answers[n])[0] and f"site{n}.example" in pdf_pages(answers[n])[0]
    assert helpers.started == 2 and len(helpers) == 2  # none started more, every one given back


def test_a_helper_killed_while_idle_is_replaced(helpers):
    helpers.render(report_html(report()))
    process = helpers._idle[0].process
    process.kill()
    process.wait()
    assert "/pricing/0" in pdf_pages(helpers.render(report_html(report())))[0]
    assert helpers.started == 2


def test_a_helper_that_cannot_answer_leaves_the_server_to_lay_it_out(monkeypatch):
    pool = PdfHelpers()
    monkeypatch.setattr(pdf_export, "PDF_HELPERS", pool)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a helper that exits at once, unread
    with pytest.raises(HelperFailed):
        pool.render(report_html(report()))
    stream = io.BytesIO()
    render_pdf(report(page="/fallback"), stream)
    assert "/fallback/0" in pdf_pages(stream.getvalue())[0]
    assert pool.renders == 0 and len(pool) == 0


def test_the_server_s_process_never_imports_weasyprint():
    script = (
        "import io, sys\n"
        "from datetime import UTC, datetime\n"
        "from appliance.extensions import Report, Table\n"
        "from plugins.pdf_export import render_pdf\n"
        "report = Report(title='Pages', site='s.example', period='2026-03-02', generated_at=datetime.now(UTC),\n"
        "                tables=(Table(title='Page', columns=('page', 'visitors'), rows=(('/a', 1),)),))\n"
        "stream = io.BytesIO()\n"
        "render_pdf(report, stream)\n"
        "assert stream.getvalue().startswith(b'%PDF-')\n"
        "print(sorted(name for name in ('weasyprint', 'fontTools', 'pydyf') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


FAILING_HELPER = """
from plugins.pdf_process import serve


def render(document, stream):
    if "fail" in document:
        raise ValueError("no layout for this one")
    stream.write(document.upper().encode())


serve(render)
"""


def test_a_render_that_fails_in_the_helper_is_the_caller_s_error_and_the_helper_serves_on(tmp_path, monkeypatch):
    (tmp_path / "failing_helper.py").write_text(FAILING_HELPER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(pdf_process, "HELPER_MODULE", "failing_helper")
    pool = PdfHelpers()
    try:
        with pytest.raises(RenderFailed, match="ValueError: no layout for this one"):
            pool.render("please fail")
        assert pool.render("then this") == b"THEN THIS"
        assert pool.started == 1 and pool.renders == 1 and len(pool) == 1
    finally:
        pool.close()

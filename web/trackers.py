"""The tracker at the paths other tools' snippets load: Footfall's own tracker in compatibility mode.

A Plausible snippet (``<script defer data-domain="example.com" src="https://HOST/js/script.js">``,
or a variant such as ``script.outbound-links.file-downloads.js``) and an Umami snippet
(``<script defer src="https://HOST/script.js" data-website-id="UUID">``) load the same bytes:
a one-line preamble that maps the snippet's attributes onto ``footfall.js``'s (``data-domain``
or ``data-website-id`` become ``data-site``; Umami's ``data-host-url`` becomes the collect URL),
``footfall.js`` itself, and ``compat.js``, which provides ``window.plausible`` and
``window.umami`` and the automatic events the file name asks for (outbound links, file
downloads, tagged events; Umami's ``data-umami-event`` attributes always). Events go to
``/api/v1/collect`` like the tracker's own. Extensions that ask for something the tracker does
anyway (``revenue``, ``compat``, ``local``) or that are not honoured (``pageview-props``: see
README) are accepted; an unknown one is a 404. ``hash`` counts ``#/routes`` as pages.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

STATIC = Path(__file__).parent / "static"
# Plausible's documented script extensions that Footfall serves (see the module docstring)
EXTENSIONS = frozenset({
    "outbound-links", "file-downloads", "tagged-events", "revenue", "hash", "pageview-props", "compat", "local",
})
_NAME = re.compile(r"^script((?:\.[a-z0-9-]+)*)\.js$")
PREAMBLE = (
    "((s,a)=>{s.site=s.site||(s.domain||'').split(',')[0]||s.websiteId;"
    "delete s.api;a&&(s.api=a.replace(/\\/$/,'')+'/api/v1/collect')})"
    "(document.currentScript.dataset,document.currentScript.dataset.hostUrl);\n"
)
HEADERS = {"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"}


def script_extensions(name: str) -> tuple[str, ...] | None:
    """The extensions a script file name asks for, sorted; None if it is not a known script."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    extensions = tuple(sorted({part for part in match.group(1).split(".") if part}))
    if not set(extensions) <= EXTENSIONS:
        return None
    return extensions


# Hash-based routing: pages are told apart by ``#fragment`` too (a fragment change fires
# ``popstate``, which the tracker already follows), and every body asks the collect endpoint to
# keep the fragment (``h``). The edits are checked: a changed footfall.js fails loudly here.
HASH_EDITS = (("l.pathname + l.search", "l.pathname + l.search + l.hash", 2), ("{ k, s: site,", "{ k, h: 1, s: site,", 1))


def _hash_mode(tracker: str) -> str:
    for old, new, count in HASH_EDITS:
        if tracker.count(old) != count:
            raise RuntimeError(f"footfall.js changed: cannot apply the hash mode edit {old!r}")
        tracker = tracker.replace(old, new)
    return tracker


@functools.lru_cache(maxsize=512)  # 2**8 sets of extensions at most
def compat_script(extensions: tuple[str, ...]) -> bytes:
    """The bytes served for one set of extensions (``umami`` for Umami's script)."""
    tracker = (STATIC / "footfall.js").read_text()
    if "hash" in extensions:
        tracker = _hash_mode(tracker)
    adapter = (STATIC / "compat.js").read_text().replace('"EXTENSIONS"', repr(".".join(extensions)))
    return (PREAMBLE + tracker + adapter).encode()


@get("/js/{script:str}", include_in_schema=False, cache=False)
async def plausible_script(script: FromPath[str]) -> Response:
    """Plausible's snippet paths: ``/js/script.js`` and its extension variants."""
    extensions = script_extensions(script)
    if extensions is None:
        raise NotFoundException(f"no script {script!r}")
    return Response(compat_script(extensions), media_type="application/javascript", headers=HEADERS)


@get("/script.js", include_in_schema=False, cache=False)
async def umami_script() -> Response:
    """Umami's snippet path: ``/script.js`` with ``data-website-id``."""
    return Response(compat_script(("umami",)), media_type="application/javascript", headers=HEADERS)


TRACKER_ROUTES = [plausible_script, umami_script]

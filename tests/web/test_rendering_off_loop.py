"""Pages are rendered in the handler's worker thread, never on the event loop that answers
tracker requests (``web/rendering.py``): Litestar renders a plain ``Template`` on the loop."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import jinja2
import pytest
from litestar.testing import TestClient

from appliance.config import load_settings
from tests.servers import BROWSER_UA
from web.app import create_app

WEB = Path(__file__).resolve().parents[2] / "web"
PASSWORD = "a-long-test-password"
# Exception handlers run on the loop whatever they return: the error page stays a Template.
RENDERED_ON_THE_LOOP = {"errors.py"}


def _on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def renders(monkeypatch) -> list[tuple[str, bool]]:
    """Every jinja2 template rendered: (name, whether on a running event loop)."""
    seen: list[tuple[str, bool]] = []
    render = jinja2.Template.render

    def recording(self, *args, **kwargs):
        seen.append((self.name, _on_the_loop()))
        return render(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Template, "render", recording)
    return seen


def test_dashboard_pages_and_widgets_render_off_the_event_loop(tmp_path, renders):
    app = create_app(load_settings(environ={}, data_dir=str(tmp_path / "data")))
    with TestClient(app) as client:
        appliance = app.state.appliance
        appliance.accounts.create("admin", PASSWORD, "admin")
        appliance.sites.add("example.com", name="Example")
        event = {"event_type": "page_view", "site": "example.com", "user_id": "someone",
                 "metadata": {"page_url": "https://example.com/pricing"}}
        assert client.post("/api/v1/events", json=event, headers={"user-agent": BROWSER_UA}).status_code == 200
        login = client.get("/login")
        assert login.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        answer = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": csrf},
                             follow_redirects=False)
        assert answer.status_code == 303, answer.text
        for path in ("/sites/example.com", "/sites/example.com/widgets/chart", "/account"):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert page.headers["content-type"].startswith("text/html")
        assert "/pricing" in client.get("/sites/example.com").text
    rendered = {name for name, _ in renders}
    assert {"login.html", "dashboard/site.html", "dashboard/_widget_chart.html", "account.html"} <= rendered
    assert [name for name, on_loop in renders if on_loop] == []


def test_no_handler_builds_a_template_rendered_on_the_loop():
    found = []
    for path in sorted(WEB.glob("*.py")):
        if path.name in RENDERED_ON_THE_LOOP:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Template":
                found.append(f"{path.name}:{node.lineno}")
    assert found == [], f"use web.rendering.RenderedTemplate: {found}"

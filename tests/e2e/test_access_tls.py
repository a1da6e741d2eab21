"""granian serves HTTPS when the config names a certificate and a key; cookies are Secure."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import time

import httpx
import pytest

from tests.servers import FOOTFALL, ROOT, free_port


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_a_certificate_and_key(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    port = free_port()
    data = tmp_path / "data"
    env = {**os.environ, "FOOTFALL_SERVER_TLS_CERTIFICATE": str(cert), "FOOTFALL_SERVER_TLS_PRIVATE_KEY": str(key)}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([*FOOTFALL, "serve", "--data", str(data), "--port", str(port)], cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert)), timeout=5) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/api/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            page = client.get("/login")
            assert page.headers["strict-transport-security"].startswith("max-age=")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            password = (data / "first-admin-password.txt").read_text().strip()
            answer = client.post("/login", data={"username": "admin", "password": password, "csrf": csrf},
                                 follow_redirects=False)
            assert answer.status_code == 303, answer.text
            cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("footfall_session="))
            assert "secure" in cookie.lower() and "httponly" in cookie.lower()
            assert client.get("/account").status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)  # no plain HTTP on the port
        # the container's HEALTHCHECK: `footfall health` takes https from the same settings
        probe = subprocess.run([*FOOTFALL, "health", "--port", str(port)], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert probe.stdout.startswith(f"healthy: https://127.0.0.1:{port}/ready answered 200"), probe.stdout
    finally:
        os.killpg(process.pid, 9)
        process.wait(timeout=30)
        log.close()

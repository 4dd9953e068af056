"""The documentation says what the code does, and keeps saying it.

Each test ties a piece of README.md or docs/ to its source of truth: the state diagram to
``TRANSITIONS`` (through docs/make_state_diagram.py), the defaults in the tables to the
constants and signatures, the exception tree to the classes, quoted example code to the files
in examples/ (which tests/test_examples.py runs), the README's examples to a real run, and every
relative link to a file that exists.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

import wskit.exceptions
from wskit.asyncio import ConnectionStatistics, connect, serve
from wskit.asyncio import client as asyncio_client
from wskit.asyncio import connection as asyncio_connection
from wskit.asyncio import server as asyncio_server
from wskit.core.connection import MAX_HELD_BYTES, MAX_PENDING_PONGS, TRANSITIONS
from wskit.core.extensions import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory
from wskit.core.handshake import USER_AGENT
from wskit.core.limits import Limits

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
SRC = ROOT / "src"
TIMEOUT = 20.0

#: Link targets written by other issues, allowed to be missing until they land.
PLANNED = {"benchmarks/README.md"}

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_EXCERPT = re.compile(r"<!-- from (\S+) -->\n```\w*\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def code_blocks(path: Path, language: str | None = None) -> list[str]:
    blocks = _FENCE.findall(path.read_text(encoding="utf-8"))
    return [body for lang, body in blocks if language is None or lang == language]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_state_diagram", DOCS / "make_state_diagram.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_row(text: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is ```name```."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == f"`{name}`":
            return cells
    raise AssertionError(f"no table row for `{name}`")


# -- the state diagram -------------------------------------------------------------------------


def test_state_diagram_is_the_one_generated_from_transitions() -> None:
    script = load_script()
    text = (DOCS / "state-machine.md").read_text(encoding="utf-8")
    assert script.replace_block(text, script.render()) == text, (
        "docs/state-machine.md is stale: run python docs/make_state_diagram.py"
    )
    assert script.main(["--check"]) == 0


def test_state_diagram_draws_every_transition() -> None:
    text = (DOCS / "state-machine.md").read_text(encoding="utf-8")
    for (source, event), target in TRANSITIONS.items():
        assert f"    {source.name} --> {target.name}: {event}\n" in text
        assert f"| `{source.name}` | {event} | `{target.name}` |" in text


def test_state_diagram_follows_a_changed_table() -> None:
    script = load_script()
    changed = dict(TRANSITIONS)
    changed.popitem()
    assert script.render(changed) != script.render()


# -- README ------------------------------------------------------------------------------------


def test_readme_opens_with_the_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    title, pitch, *_ = [line for line in text.splitlines() if line]
    assert title == "# wskit"
    assert not pitch.startswith(("#", "`", "1."))  # a one-line pitch, then the commands
    head = text.split("\n## ", 1)[0]  # everything before the first section
    commands = [body.strip() for _, body in _FENCE.findall(re.sub(r"^ +", "", head, flags=re.M))]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/python -m wskit serve",
        "bash scripts/test.sh",
    ]
    assert "http://127.0.0.1:8765/" in head
    assert "WSKIT_QUICK=1 bash scripts/test.sh" in head


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readme_server_and_client_run() -> None:
    server_code, client_code = code_blocks(README, "python")[:2]
    assert "serve(" in server_code and "connect(" in client_code
    port = str(free_port())
    env = dict(os.environ)
    if SRC.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c"]
    server = subprocess.Popen(
        [*command, server_code.replace("8765", port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the README server does not listen"
                time.sleep(0.05)
        client = subprocess.run(
            [*command, client_code.replace("8765", port)],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        server.terminate()
        _, server_errors = server.communicate(timeout=TIMEOUT)
    assert client.returncode == 0, client.stderr
    assert client.stdout == "Hello world!\n"
    assert "Traceback" not in server_errors


# -- code in the docs --------------------------------------------------------------------------


def test_python_blocks_compile() -> None:
    for path in markdown_files():
        for n, block in enumerate(code_blocks(path, "python")):
            try:
                compile(block, f"{path.name} block {n}", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            except SyntaxError as exc:
                pytest.fail(f"{path.name}: python block {n} does not compile: {exc}")


def test_quoted_example_code_is_the_examples_code() -> None:
    """A block after ``<!-- from examples/x.py -->`` is copied verbatim from that file."""
    quoted = 0
    for path in markdown_files():
        for source, block in _EXCERPT.findall(path.read_text(encoding="utf-8")):
            code = (ROOT / source).read_text(encoding="utf-8")
            assert block in code, f"{path.name}: the block quoted from {source} differs from it"
            quoted += 1
    assert quoted >= 5


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_resolve() -> None:
    for path in markdown_files():
        for target in _LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http://, https://, mailto:
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            relative = linked.relative_to(ROOT).as_posix() if linked.is_relative_to(ROOT) else ""
            if relative in PLANNED and not linked.exists():
                continue
            assert linked.exists(), f"{path.name} links to a missing {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                assert anchor in {slug(h) for h in headings}, f"{path.name}: no #{anchor}"


def test_tables_are_well_formed() -> None:
    """Every row of a table has as many cells as its header (a stray ``|``, even inside
    backticks, splits a cell on GitHub)."""
    for path in markdown_files():
        widths: list[int] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.startswith("|"):
                widths = []
                continue
            widths.append(line.strip().strip("|").count("|"))
            assert widths[-1] == widths[0], f"{path.name}:{number}: {widths[-1] + 1} cells"


# -- defaults and names ------------------------------------------------------------------------


def test_limits_table_has_every_field_and_its_default() -> None:
    text = (DOCS / "limits.md").read_text(encoding="utf-8")
    for field in dataclasses.fields(Limits):
        cells = table_row(text, field.name)
        assert cells[1].split()[0] == str(field.default), f"{field.name}: {cells[1]}"


def test_asyncio_defaults_in_limits_md() -> None:
    text = (DOCS / "limits.md").read_text(encoding="utf-8")
    seconds = {
        "open_timeout": asyncio_server.DEFAULT_OPEN_TIMEOUT,
        "ping_interval": asyncio_connection.DEFAULT_PING_INTERVAL,
        "ping_timeout": asyncio_connection.DEFAULT_PING_TIMEOUT,
        "close_timeout": asyncio_connection.DEFAULT_CLOSE_TIMEOUT,
    }
    assert asyncio_client.DEFAULT_OPEN_TIMEOUT == asyncio_server.DEFAULT_OPEN_TIMEOUT
    for name, value in seconds.items():
        assert table_row(text, name)[1] == f"{value:g} s"
    assert table_row(text, "max_queue")[1] == str(asyncio_connection.DEFAULT_MAX_QUEUE)
    assert table_row(text, "write_limit")[1].split()[0] == str(
        asyncio_connection.DEFAULT_WRITE_LIMIT
    )


def test_compression_table_has_the_factories_defaults() -> None:
    text = (DOCS / "compression.md").read_text(encoding="utf-8")
    server = inspect.signature(ServerPerMessageDeflateFactory).parameters
    client = inspect.signature(ClientPerMessageDeflateFactory).parameters

    def shown(default: object) -> str:
        # A module default (zlib_module) is written by its name.
        return default.__name__ if isinstance(default, ModuleType) else repr(default)

    for name, parameter in server.items():
        assert table_row(text, name)[1].startswith(f"`{shown(parameter.default)}`"), name
    for name, parameter in client.items():
        assert table_row(text, name)[2].startswith(f"`{shown(parameter.default)}`"), name


@pytest.mark.parametrize(("function", "page"), [(serve, "server.md"), (connect, "client.md")])
def test_every_option_is_documented(function: type, page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD or name in ("handler", "uri"):
            continue
        assert f"`{name}`" in text, f"docs/{page} does not mention {function.__name__}({name}=)"


def test_user_agent_default_is_documented() -> None:
    assert inspect.signature(connect).parameters["user_agent"].default == USER_AGENT
    cells = table_row((DOCS / "client.md").read_text(encoding="utf-8"), "user_agent")
    assert cells[1].startswith("`wskit.core.handshake.USER_AGENT`")
    assert "`None` sends none" in cells[2]


def test_sansio_md_states_the_cores_bounds() -> None:
    text = (DOCS / "sansio.md").read_text(encoding="utf-8")
    assert MAX_HELD_BYTES % 1024 == 0
    assert f"`MAX_HELD_BYTES` ({MAX_HELD_BYTES // 1024} KiB" in text
    assert f"`MAX_PENDING_PONGS` ({MAX_PENDING_PONGS}," in text


def test_statistics_fields_are_documented() -> None:
    text = (DOCS / "connection.md").read_text(encoding="utf-8")
    for field in dataclasses.fields(ConnectionStatistics):
        assert f"`{field.name}`" in text


def test_exception_tree_matches_the_classes() -> None:
    tree = next(block for block in code_blocks(DOCS / "exceptions.md") if "WebSocketError" in block)
    parents: list[type] = []
    seen = set()
    for line in tree.splitlines():
        match = re.search(r"[A-Z]\w+", line)
        assert match is not None, line
        depth = match.start() // 4
        cls = getattr(wskit.exceptions, match.group())
        if depth:
            assert parents[depth - 1] in cls.__bases__, (
                f"{cls.__name__} is drawn under the wrong parent"
            )
        if "(also RuntimeError)" in line:
            assert issubclass(cls, RuntimeError)
        if "(also ValueError)" in line:
            assert issubclass(cls, ValueError)
        del parents[depth:]
        parents.append(cls)
        seen.add(cls.__name__)
    assert seen == set(wskit.exceptions.__all__)

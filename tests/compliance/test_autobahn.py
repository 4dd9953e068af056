"""Autobahn|Testsuite conformance: wskit's servers and clients against wstest.

Slow tests (marked ``autobahn``; all 517 cases take several minutes per mode), one pair per
front end (asyncio, sync), and a server test of uvicorn with wskit's WebSocket engine:

* server mode: ``python -m wskit serve --echo --front-end F`` on a free loopback port, tested
  by ``fuzzingclient.sh``;
* client mode: ``fuzzingserver.sh`` runs ``compliance/autobahn_client.py --front-end F``
  against wstest.

The asyncio front end runs every case. The others run every case but the compression ones
(12.*, 13.*: most of a run's time, and the same core and permessage-deflate code as asyncio's)
unless ``WSKIT_AUTOBAHN_FULL=1``, which runs the full matrix for every front end (the
documented command in compliance/README.md).

Both read the report (``index.json``) themselves and require: no failed case (the definition of
shared/conformance/README.md: a behaviour other than OK / NON-STRICT / INFORMATIONAL /
UNIMPLEMENTED, a close behaviour FAILED or UNCLEAN, or a case wstest announced but never
reported), no UNIMPLEMENTED case (permessage-deflate is required, so every compression offer
must be accepted), and every case OK in both behaviour and close behaviour, except the cases
wstest always rates INFORMATIONAL and those listed with a reason in :data:`ALLOWED_NOT_OK`.

Environment:

* ``WSKIT_AUTOBAHN_CASES``: case patterns for wstest for every front end (default: see
  above), e.g. ``"*,-12.*,-13.*"`` for a quick loop without the compression cases.
* ``WSKIT_AUTOBAHN_FULL=1``: every case for every front end.
* ``WSKIT_AUTOBAHN=0``: skip both tests (a deliberate opt-out; nothing else skips them: a
  missing wstest install fails, with the command that installs it).
* ``WSKIT_CONFORMANCE_DIR``: the shared conformance scripts (default ``../shared/conformance``
  from the repository root); ``AUTOBAHN_VENV``: wstest's virtualenv (default
  ``.autobahn-venv`` in the repository root).
* ``WSKIT_AUTOBAHN_REPORTS``: keep the reports in this directory (``server/``, ``client/``)
  instead of pytest's temporary directory, e.g. to read the HTML report.

``AUTOBAHN_OPTIONS`` and ``AUTOBAHN_EXCLUDE`` are not passed on, so an environment variable
meant for a run by hand cannot weaken this test.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# Case 9.1.6 sends a 16 MiB message; 9.3.x / 9.4.x send 4 MiB in 64-byte fragments (65536).
MAX_SIZE = 16 * 2**20
MAX_FRAGMENTS = 1_000_000

# Full runs of a reference implementation took 7-10 min per mode on 2 cores
# (shared/conformance/README.md). wstest is given RUN_LIMIT s (-t) so that it stops, and the
# script still writes its summary, before pytest-timeout ends the test at TEST_LIMIT s.
TEST_LIMIT = 1800
RUN_LIMIT = 1500
SERVER_START_TIMEOUT = 30.0

#: The front ends under test; each has a server (``--front-end`` of ``python -m wskit serve``)
#: and a client runner in compliance/autobahn_client.py. "uvicorn" is uvicorn with wskit's
#: WebSocket engine (wskit.integrations.uvicorn): a server only.
FRONT_ENDS = ("asyncio", "sync", "trio")
SERVERS = (*FRONT_ENDS, "uvicorn")
#: Front ends that run every case in a default run; the others skip QUICK_EXCLUDED.
FULL_BY_DEFAULT = frozenset({"asyncio"})
QUICK_CASES = "*,-12.*,-13.*"

# Cases whose behaviour is not OK in wskit, each with the reason it is acceptable (see
# compliance/README.md, "Cases that are not OK"). Filled in from the first full run.
ALLOWED_NOT_OK: dict[str, str] = {}

# Cases wstest rates INFORMATIONAL whatever the testee does (autobahntestsuite 25.10.1, the
# onConnectionLost of case7_1_6.py, case7_13_1.py and case7_13_2.py), so they can never be OK.
WSTEST_INFORMATIONAL = {
    "7.1.6": "text message, then close, then ping, back to back: the outcome is implementation "
    "defined",
    "7.13.1": "close code 5000: the events are undefined by the spec",
    "7.13.2": "close code 65535: the events are undefined by the spec",
}

NOT_FAILED = frozenset({"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"})
CLOSE_FAILED = frozenset({"FAILED", "UNCLEAN"})


# --- reading a report -----------------------------------------------------------------------


def _case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split(".") if part.isdigit())


def announced_cases(wstest_log: Path) -> list[str] | None:
    """The case ids wstest printed at its start (``Cases = [...]``), None if it did not."""
    if not wstest_log.exists():
        return None
    for line in wstest_log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Cases = "):
            return [str(case) for case in ast.literal_eval(line.removeprefix("Cases = "))]
    return None


@dataclass(frozen=True)
class Verdict:
    summary: str  # one line: the counts
    problems: list[str]  # one line per case that breaks a requirement; empty = pass


def judge(
    agent: str,
    results: Mapping[str, Mapping[str, Any]],
    announced: Sequence[str] | None,
    allowed_not_ok: Mapping[str, str],
) -> Verdict:
    """Check the results of one agent (``index.json[agent]``) against this module's rules."""
    cases = {case: dict(result) for case, result in results.items()}
    for case in announced or ():
        cases.setdefault(case, {"behavior": "MISSING", "behaviorClose": "MISSING"})
    if not cases:
        return Verdict(f"{agent}: no results", [f"no case results for agent {agent}"])
    allowed = {**WSTEST_INFORMATIONAL, **allowed_not_ok}

    problems = []
    failed = 0
    not_ok = []
    for case in sorted(cases, key=_case_key):
        behavior = cases[case].get("behavior")
        close = cases[case].get("behaviorClose")
        described = f"case {case}: behavior={behavior} behaviorClose={close}"
        if behavior == "UNIMPLEMENTED":
            problems.append(f"{described}: UNIMPLEMENTED, but permessage-deflate is required")
            continue
        if behavior not in NOT_FAILED or close in CLOSE_FAILED:
            failed += 1
            problems.append(f"{described}: FAILED")
            continue
        if behavior != "OK" or close != "OK":
            not_ok.append(case)
            if case not in allowed:
                problems.append(f"{described}: not OK, and not in ALLOWED_NOT_OK")

    behaviors = Counter(str(c.get("behavior")) for c in cases.values())
    closes = Counter(str(c.get("behaviorClose")) for c in cases.values())
    stale = sorted(set(allowed_not_ok) & set(cases) - set(not_ok), key=_case_key)
    summary = (
        f"Autobahn {agent}: {len(cases) - failed} passed, {failed} failed of {len(cases)} "
        f"cases (behavior: {', '.join(f'{k} {n}' for k, n in sorted(behaviors.items()))}; "
        f"behaviorClose: {', '.join(f'{k} {n}' for k, n in sorted(closes.items()))}"
        + (f"; not OK: {', '.join(not_ok)}" if not_ok else "")
        + (f"; OK now, drop from ALLOWED_NOT_OK: {', '.join(stale)}" if stale else "")
        + ")"
    )
    return Verdict(summary, problems)


# --- running wstest --------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    conformance: Path
    venv: Path
    env: dict[str, str]
    cases: str


def _agent(front_end: str, mode: str) -> str:
    return f"wskit-{front_end}-{mode}"


def _setup(front_end: str) -> Setup:
    """Locate the conformance scripts and wstest; fail (never skip) when either is missing."""
    conformance = Path(
        os.environ.get("WSKIT_CONFORMANCE_DIR") or REPO.parent / "shared" / "conformance"
    ).resolve()
    venv = Path(os.environ.get("AUTOBAHN_VENV") or REPO / ".autobahn-venv").resolve()
    install = f"AUTOBAHN_VENV={venv} bash {conformance}/install.sh"
    if not (conformance / "fuzzingclient.sh").is_file():
        pytest.fail(
            f"the Autobahn conformance scripts are not in {conformance}; "
            "set WSKIT_CONFORMANCE_DIR to the shared/conformance directory",
            pytrace=False,
        )
    python2 = venv / "bin" / "python"
    installed = python2.exists() and (
        subprocess.run([str(python2), "-c", "import autobahntestsuite"], check=False).returncode
        == 0
    )
    if not installed:
        pytest.fail(
            f"wstest (Autobahn|Testsuite) is not installed in {venv}. Install it with:\n"
            f"    {install}\n"
            "(or run bash scripts/test.sh, which does; WSKIT_AUTOBAHN=0 skips these tests)",
            pytrace=False,
        )

    env = dict(os.environ)
    for name in ("AUTOBAHN_OPTIONS", "AUTOBAHN_EXCLUDE", "AUTOBAHN_CASES", "AUTOBAHN_REPORT_DIR"):
        env.pop(name, None)
    env["AUTOBAHN_VENV"] = str(venv)
    env.setdefault("AUTOBAHN_PYTHON3", sys.executable)  # runs the scripts' small helpers
    # The code under test is this checkout's, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    cases = os.environ.get("WSKIT_AUTOBAHN_CASES")
    if not cases:
        full = front_end in FULL_BY_DEFAULT or os.environ.get("WSKIT_AUTOBAHN_FULL") == "1"
        cases = "*" if full else QUICK_CASES
    return Setup(conformance, venv, env, cases)


def _report_dir(tmp_path: Path, mode: str) -> Path:
    base = os.environ.get("WSKIT_AUTOBAHN_REPORTS")
    path = (Path(base).resolve() if base else tmp_path) / mode
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _stop(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """End ``process``, started with ``start_new_session=True``, and whatever it started.

    SIGTERM first (the conformance scripts' traps stop wstest and the client on it), SIGKILL to
    its process group after ``grace`` seconds, and SIGKILL to any leftover of the group.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _run_script(setup: Setup, script: str, args: list[str], log: Path) -> int:
    """Run a conformance script with its output in ``log``; return its exit status."""
    command = ["bash", str(setup.conformance / script), *args]
    print("$", " ".join(command))
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=setup.env,
            cwd=REPO,
            start_new_session=True,  # its own process group: nothing outlives the test
        )
    try:
        return process.wait(RUN_LIMIT + 120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} still running after {RUN_LIMIT + 120} s", pytrace=False)
    finally:
        _stop(process)
        print(_tail(log))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _echo_server(
    setup: Setup, front_end: str, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m wskit serve --echo`` on a free loopback port, until the block ends."""
    port = _free_port()
    command = [
        sys.executable, "-m", "wskit", "serve", "--echo", "--front-end", front_end,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-size", str(MAX_SIZE), "--max-fragments", str(MAX_FRAGMENTS),
        "--no-ping",
    ]  # fmt: skip
    print("$", " ".join(command))
    with log.open("wb") as out:
        server = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=setup.env,
            cwd=REPO,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"the echo server exited with status {server.returncode} before accepting "
                    f"connections; its output:\n{_tail(log)}",
                    pytrace=False,
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the echo server did not accept connections on port {port} within "
                        f"{SERVER_START_TIMEOUT:.0f} s; its output:\n{_tail(log)}",
                        pytrace=False,
                    )
                time.sleep(0.1)
        yield server, port
    finally:
        _stop(server)


# Exit statuses of fuzzingclient.sh / fuzzingserver.sh (shared/conformance/README.md).
SCRIPT_STATUS = {
    1: "failed or missing cases",
    2: "setup error, or wstest stopped by its time limit",
    3: "every case passed but the client driver exited non-zero (a hung case, or a crash)",
}


def _check_report(
    outdir: Path,
    agent: str,
    status: int,
    run_log: Path,
    summary_note: Callable[[str], None],
    *,
    problems: Sequence[str] = (),
) -> None:
    """Judge the report in ``outdir``; fail with ``problems`` and every problem found there."""
    script = run_log.stem
    index = outdir / "index.json"
    if not index.exists():
        pytest.fail(
            f"{script} exited with status {status} ({SCRIPT_STATUS.get(status, '?')}) and "
            f"wrote no report; its output:\n{_tail(run_log)}",
            pytrace=False,
        )
    report = json.loads(index.read_text(encoding="utf-8"))
    verdict = judge(
        agent, report.get(agent, {}), announced_cases(outdir / "wstest.log"), ALLOWED_NOT_OK
    )
    print(verdict.summary)
    summary_note(f"{verdict.summary}\n  report: {outdir / 'index.html'}")
    found = list(problems)
    if status != 0:
        found.append(f"{script} exited with status {status}: {SCRIPT_STATUS.get(status, '?')}")
    found += verdict.problems
    if found:
        pytest.fail("\n".join([verdict.summary, *found, f"report: {outdir}"]), pytrace=False)


skip_on_request = pytest.mark.skipif(
    os.environ.get("WSKIT_AUTOBAHN") == "0",
    reason="WSKIT_AUTOBAHN=0: the Autobahn conformance tests are switched off",
)


@pytest.mark.autobahn
@pytest.mark.timeout(TEST_LIMIT)
@skip_on_request
@pytest.mark.parametrize("front_end", SERVERS)
def test_server(front_end: str, tmp_path: Path, summary_note: Callable[[str], None]) -> None:
    setup = _setup(front_end)
    outdir = _report_dir(tmp_path, f"{front_end}-server")
    run_log = outdir / "fuzzingclient.sh.log"
    problems = []
    agent = _agent(front_end, "server")
    with _echo_server(setup, front_end, outdir / "server.log") as (server, port):
        args = [
            "-a", agent, "-o", str(outdir), "-c", setup.cases, "-t", str(RUN_LIMIT),
            f"127.0.0.1:{port}",
        ]  # fmt: skip
        status = _run_script(setup, "fuzzingclient.sh", args, run_log)
        if server.poll() is not None:
            problems.append(
                f"the echo server exited during the run with status {server.returncode}; "
                f"its output:\n{_tail(outdir / 'server.log')}"
            )
    _check_report(outdir, agent, status, run_log, summary_note, problems=problems)


@pytest.mark.autobahn
@pytest.mark.timeout(TEST_LIMIT)
@skip_on_request
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_client(front_end: str, tmp_path: Path, summary_note: Callable[[str], None]) -> None:
    setup = _setup(front_end)
    outdir = _report_dir(tmp_path, f"{front_end}-client")
    run_log = outdir / "fuzzingserver.sh.log"
    agent = _agent(front_end, "client")
    args = [
        "-p", "0", "-a", agent, "-o", str(outdir), "-c", setup.cases, "-t", str(RUN_LIMIT),
        "--", sys.executable, str(REPO / "compliance" / "autobahn_client.py"),
        "--front-end", front_end,
        "--max-size", str(MAX_SIZE), "--max-fragments", str(MAX_FRAGMENTS),
    ]  # fmt: skip
    status = _run_script(setup, "fuzzingserver.sh", args, run_log)
    _check_report(outdir, agent, status, run_log, summary_note)


# --- the checks themselves, on made-up reports (fast, not marked autobahn) ---------------------


def _result(behavior: str, close: str = "OK") -> dict[str, Any]:
    return {"behavior": behavior, "behaviorClose": close, "remoteCloseCode": 1000}


def test_judge_accepts_ok_and_wstest_informational_cases() -> None:
    results = {
        "1.1.1": _result("OK"),
        "7.1.6": _result("INFORMATIONAL", "INFORMATIONAL"),
        "12.1.1": _result("OK"),
    }
    verdict = judge("agent", results, ["1.1.1", "7.1.6", "12.1.1"], {})
    assert verdict.problems == []
    assert verdict.summary.startswith("Autobahn agent: 3 passed, 0 failed of 3 cases")


def test_judge_reports_every_kind_of_problem() -> None:
    results = {
        "1.1.1": _result("OK"),
        "2.1": _result("FAILED"),
        "3.1": _result("OK", "UNCLEAN"),
        "3.2": _result("NON-STRICT"),
        "3.3": _result("NON-STRICT"),
        "4.1.1": _result("OK", "WRONG CODE"),
        "5.1": _result("OK", "FAILED"),
        "12.1.1": _result("UNIMPLEMENTED", "UNIMPLEMENTED"),
        "13.1.1": _result("OK"),
    }
    announced = [*results, "6.1.1"]
    allowed = {"3.3": "a reason", "13.1.1": "no longer needed"}
    verdict = judge("agent", results, announced, allowed)
    flagged = [problem.split(":")[0] for problem in verdict.problems]
    assert flagged == [
        "case 2.1",  # FAILED behaviour
        "case 3.1",  # UNCLEAN close
        "case 3.2",  # NON-STRICT, not allowed (3.3 is)
        "case 4.1.1",  # WRONG CODE close alone is not a failure, but not OK either
        "case 5.1",  # FAILED close
        "case 6.1.1",  # announced, never reported
        "case 12.1.1",  # compression not negotiated
    ]
    assert "4 failed of 10 cases" in verdict.summary
    assert "OK now, drop from ALLOWED_NOT_OK: 13.1.1" in verdict.summary


def test_judge_fails_an_empty_report() -> None:
    assert judge("agent", {}, None, {}).problems == ["no case results for agent agent"]


def test_announced_cases_reads_the_wstest_log(tmp_path: Path) -> None:
    log = tmp_path / "wstest.log"
    log.write_text("Autobahn Fuzzing WebSocket Client\nCases = ['1.1.1', '12.1.1']\nok\n")
    assert announced_cases(log) == ["1.1.1", "12.1.1"]
    assert announced_cases(tmp_path / "absent.log") is None

"""Every ``python`` and ``bash`` block of README.md, run in order as a reader pastes them.

- **Python blocks share one namespace for the whole file**, as in one notebook: the tour's
  first block starts the simulator (``sim``) and makes ``client``; later sections use
  them, and ``w``, ``iv``, ``inst`` carry from section to section as the text says.
- **Bash blocks** run with ``bash -eu`` in a scratch directory that is also ``$HOME``
  (``~/koyeb-history`` lands there), with ``KOYEB_URL`` and ``KOYEB_TOKEN`` naming that
  same simulator: the commands the README runs "against the real API" run against it,
  as the README says a reader can do.
- A block preceded by ``<!-- needs: WHAT -->`` (a Koyeb account, Spark, ...) is skipped by
  name with WHAT as the reason; ``<!-- interrupt: 5s -->`` runs a command that lasts until
  Ctrl-C and sends it SIGINT after that long (it must then exit 0). No other block is
  skipped, and ``test_every_block_is_run_or_skipped_by_name`` counts them.

One simulator for the whole file; each test runs the blocks before its own first (once),
so ``-k`` selects a single block and still gets the namespace it needs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUN = ("python", "bash")
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
MARK = re.compile(r"<!--\s*(needs|interrupt):\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    name: str
    lang: str
    line: int          # line of the first line of code (1-based)
    source: str
    needs: str | None  # the reason it is skipped, or None
    interrupt: float | None


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower().replace("`", "")).strip("-")[:40]


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` in a language the runner runs, in order."""
    found: list[Block] = []
    per_section: dict[str, int] = {}
    for m in FENCE.finditer(text):
        lang = m.group(1)
        if lang not in RUN:
            continue
        before = text[:m.start()]
        headings = re.findall(r"^##+ (.+)$", before, re.M)
        section = _slug(headings[-1]) if headings else "top"
        per_section[section] = per_section.get(section, 0) + 1
        previous = [ln for ln in before.splitlines() if ln.strip()][-1:] or [""]
        mark = MARK.search(previous[0])
        needs = mark.group(2) if mark and mark.group(1) == "needs" else None
        interrupt = None
        if mark and mark.group(1) == "interrupt":
            interrupt = float(mark.group(2).rstrip("s"))
        found.append(Block(f"{section}-{per_section[section]}", lang,
                           before.count("\n") + 2, m.group(2), needs, interrupt))
    return found


BLOCKS = blocks(README.read_text())


class Reader:
    """A reader going down the README: one namespace, one scratch home, in order."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ns: dict[str, Any] = {"__name__": "__readme__"}
        self.done: dict[str, str | None] = {}   # name -> None (ran) or the failure

    def run_through(self, index: int) -> str | None:
        for block in BLOCKS[:index + 1]:
            if block.name not in self.done:
                self.done[block.name] = None if block.needs else self._run(block)
        return self.done[BLOCKS[index].name]

    def _run(self, block: Block) -> str | None:
        try:
            if block.lang == "python":
                # Blank lines first, so tracebacks name the README's own line numbers.
                code = compile("\n" * (block.line - 1) + block.source, str(README), "exec")
                exec(code, self.ns)
                return None
            return self._shell(block)
        except Exception:
            return traceback.format_exc(limit=-8)

    def _shell(self, block: Block) -> str | None:
        sim = self.ns.get("sim")
        if sim is None:
            return "no simulator yet: the README's first python block must start `sim`"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KOYEB_") and k not in ("HOME", "MPLBACKEND")}
        env.update(HOME=str(self.home), KOYEB_URL=sim.url, KOYEB_TOKEN=sim.token,
                   MPLBACKEND="Agg", PYTHONFAULTHANDLER="1",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
        proc = subprocess.Popen(["bash", "-eu", "-c", block.source], cwd=self.home, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            if block.interrupt is not None:
                time.sleep(block.interrupt)
                os.killpg(proc.pid, signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=600 if block.interrupt is None else 60)
            except subprocess.TimeoutExpired:
                # Where it is stuck: every thread's stack (PYTHONFAULTHANDLER).
                os.killpg(proc.pid, signal.SIGABRT)
                out, _ = proc.communicate(timeout=10)
                return f"still running {'after Ctrl-C' if block.interrupt else ''}; " \
                       f"its threads:\n{out[-6000:]}"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.returncode != 0:
            return f"exit status {proc.returncode}:\n{out[-3000:]}"
        return None

    def close(self) -> None:
        import matplotlib.pyplot as plt

        plt.close("all")
        for name in ("view", "client", "sim"):
            stop = getattr(self.ns.get(name), "stop" if name != "client" else "close", None)
            if callable(stop):
                stop()


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory):
    import matplotlib

    matplotlib.use("Agg")
    home = tmp_path_factory.mktemp("reader-home")
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    os.chdir(home)
    os.environ["HOME"] = str(home)     # `~/koyeb-history` in python blocks lands here too
    r = Reader(home)
    try:
        yield r
    finally:
        r.close()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.name for b in BLOCKS])
def test_readme_block(reader: Reader, index: int) -> None:
    block = BLOCKS[index]
    if block.needs:
        pytest.skip(f"{block.name} (README.md:{block.line}) needs {block.needs}")
    failure = reader.run_through(index)
    assert failure is None, f"README.md:{block.line} ({block.lang}) failed:\n{failure}"


def test_every_block_is_run_or_skipped_by_name() -> None:
    text = README.read_text()
    fenced = [m.group(1) for m in FENCE.finditer(text)]
    runnable = [lang for lang in fenced if lang in RUN]
    run = [b for b in BLOCKS if not b.needs]
    skipped = [b for b in BLOCKS if b.needs]
    assert len(run) + len(skipped) == len(runnable) == len(BLOCKS)
    assert all(b.needs.strip() for b in skipped)
    # Every fence is closed and tagged, so no python or bash block hides under another name.
    assert text.count("```") == 2 * len(fenced)
    assert len({b.name for b in BLOCKS}) == len(BLOCKS)
    assert len(run) >= 10


def test_marks_apply_to_the_next_block_only() -> None:
    text = ("## One\n\n<!-- needs: a Koyeb account -->\n```bash\nkoyeb-analytics sync\n```\n\n"
            "```python\nx = 1\n```\n\n## Two `watch`\n\n<!-- interrupt: 3s -->\n"
            "```bash\nkoyeb-analytics watch\n```\n\n```sql\nselect 1\n```\n")
    found = blocks(text)
    assert [(b.name, b.lang, b.needs, b.interrupt) for b in found] == [
        ("one-1", "bash", "a Koyeb account", None), ("one-2", "python", None, None),
        ("two-watch-1", "bash", None, 3.0)]
    assert found[1].line == 9 and found[1].source == "x = 1\n"

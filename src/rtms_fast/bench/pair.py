"""Two engines at once on halves of one simulator's sessions: this checkout against another
(``rtms-fast bench pair --baseline-src DIR``), measured in the same seconds.

This machine's speed moves whole runs by more than a code change of 10 % (README,
"Performance"), so runs of two codes one after the other compare the machine's moments as
much as the codes. Here both engine processes run side by side, each on every other session
of one simulator, and the halves swap codes every round; per round the figure is the ratio
of their CPU per audio message in the steady state, without the load client's consumer
(below 1: this checkout costs less). Both share the cores with each other and with the
simulator, so their absolute figures are higher than a solo run's: read the ratio.

The baseline is another checkout's ``src`` folder with its native module built in place
(``python build.py`` there); its engine runs with that folder first on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rtms_fast
from rtms_fast.bench.load import _client_cmd, _start_simulator
from rtms_fast.bench.sampler import steady_state

CURRENT_SRC = Path(rtms_fast.__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class PairRound:
    current_us: float  # engine CPU per message without the consumer, this checkout
    baseline_us: float
    current_messages: int
    baseline_messages: int
    current_drops: int
    baseline_drops: int

    @property
    def ratio(self) -> float:
        """This checkout's CPU per message over the baseline's (below 1: cheaper)."""
        return self.current_us / self.baseline_us if self.baseline_us > 0 else float("nan")


def check_tree(src: Path) -> Path:
    """``src`` resolved if it holds an importable, built rtms_fast; else ValueError."""
    package = src / "rtms_fast"
    if not (package / "__init__.py").is_file():
        raise ValueError(f"{src} has no rtms_fast package (give a checkout's src folder)")
    if not any(package.glob("_native*.so")) and not any(package.glob("_native*.pyd")):
        raise ValueError(f"{package} has no built native module: run `python build.py` in "
                         "that checkout first")
    return src.resolve()


def run_pair(baseline_src: Path, *, sessions: int = 500, duration_s: float = 20.0,
             sweep_ms: float = 20.0, codec: str = "pcma", tls: bool = False, rounds: int = 3,
             seed: int = 1,
             on_round: Callable[[int, PairRound], None] | None = None) -> list[PairRound]:
    """``rounds`` simulator runs of 2 x ``sessions`` sessions, each half to one engine."""
    baseline = check_tree(baseline_src)
    out: list[PairRound] = []
    for index in range(rounds):
        # the halves swap codes every round: no code keeps the same sessions or start order
        trees = (CURRENT_SRC, baseline) if index % 2 == 0 else (baseline, CURRENT_SRC)
        figures = _one_round(trees, sessions, duration_s, sweep_ms, codec, tls, seed)
        current, base = (figures[0], figures[1]) if index % 2 == 0 else (figures[1], figures[0])
        result = PairRound(current_us=current[0], baseline_us=base[0],
                           current_messages=current[1], baseline_messages=base[1],
                           current_drops=current[2], baseline_drops=base[2])
        out.append(result)
        if on_round is not None:
            on_round(index, result)
    return out


def _one_round(trees: tuple[Path, Path], sessions: int, duration_s: float, sweep_ms: float,
               codec: str, tls: bool, seed: int) -> list[tuple[float, int, int]]:
    with tempfile.TemporaryDirectory(prefix="rtms-pair-") as tmp_name:
        tmp = Path(tmp_name)
        sim, lines = _start_simulator(tmp, 2 * sessions, 1, codec, duration_s, tls, 20, seed)
        deadline = duration_s + 60.0
        clients: list[subprocess.Popen[bytes]] = []
        try:
            for half, tree in enumerate(trees):
                payloads = tmp / f"payloads{half}.jsonl"
                payloads.write_text("".join(lines[half::2]), encoding="utf-8")
                env = dict(os.environ)
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
                cmd = _client_cmd("engine", payloads, tmp / f"client{half}.json", codec, 20,
                                  str(tmp / "ca.pem") if tls else None, sweep_ms, deadline)
                clients.append(subprocess.Popen(cmd, cwd=tmp, env=env))
            for client in clients:
                if client.wait(timeout=deadline + 30) != 0:
                    raise RuntimeError(f"an engine client failed (exit {client.returncode})")
            sim.wait(timeout=30)
        finally:
            for proc in (*clients, sim):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if sim.stdout is not None:
                sim.stdout.close()
        figures = []
        for half in range(2):
            result = json.loads((tmp / f"client{half}.json").read_text(encoding="utf-8"))
            steady = steady_state([tuple(s) for s in result["cpu_samples"]])
            figures.append((steady.engine_us_per_msg, int(result["messages"]),
                            int(result["drops"])))
        return figures

"""Tables, Markdown reports and (optionally) PNG plots for benchmark results.

Plotting needs matplotlib (the ``plot`` extra); without it the report says so
and everything else is still written.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtms_fast.bench.gate import GateOutcome
from rtms_fast.bench.load import LoadResult
from rtms_fast.bench.timing import PairResult

LOAD_COLUMNS = (
    ("client", "client", "{}"),
    ("sessions", "sessions", "{}"),
    ("codec", "codec", "{}"),
    ("tls_label", "tls", "{}"),
    ("sweep_ms", "sweep ms", "{:g}"),
    ("messages_sent", "sent", "{}"),
    ("messages_received", "received", "{}"),
    ("drops_label", "drops", "{}"),
    ("us_per_msg", "CPU us/msg", "{:.2f}"),
    ("engine_us_per_msg", "w/o consumer", "{:.2f}"),
    ("recv_us_per_msg", "in recv", "{:.2f}"),
    ("cores_used", "cores", "{:.3f}"),
    ("latency_p50_ms", "p50 ms", "{:.1f}"),
    ("latency_p99_ms", "p99 ms", "{:.1f}"),
    ("sim_misses", "sim misses", "{}"),
    ("tcp_segments_per_msg", "segs/msg", "{:.2f}"),
    ("empty_reads_per_msg", "empty reads/msg", "{:.3f}"),
    ("ack_rearms_per_msg", "ACK re-arms/msg", "{:.3f}"),
    ("keepalive_label", "keep-alives answered", "{}"),
)


def machine_description() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ncpu = os.cpu_count() or "?"
    return f"{cpu or platform.processor()} ({ncpu} cores), Python {platform.python_version()}"


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns, two spaces apart."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _load_rows(results: Sequence[LoadResult]) -> list[list[str]]:
    return [[fmt.format(getattr(r, key)) for key, _, fmt in LOAD_COLUMNS] for r in results]


def load_table(results: Sequence[LoadResult]) -> str:
    return _text_table([title for _, title, _ in LOAD_COLUMNS], _load_rows(results))


def load_markdown(results: Sequence[LoadResult]) -> str:
    return _markdown_table([title for _, title, _ in LOAD_COLUMNS], _load_rows(results))


MEDIAN_COLUMNS = (
    ("client", "client", "{}"),
    ("sessions", "sessions", "{}"),
    ("tls", "tls", "{}"),
    ("sweep_ms", "sweep ms", "{:g}"),
    ("runs", "runs", "{}"),
    ("us_per_msg_median", "CPU us/msg", "{:.2f}"),
    ("us_per_msg_range", "range", "{}"),
    ("engine_us_per_msg_median", "w/o consumer", "{:.2f}"),
    ("engine_us_per_msg_range", "range", "{}"),
    ("recv_us_per_msg_median", "in recv", "{:.2f}"),
    ("cores_median", "cores", "{:.3f}"),
    ("all_received", "all received", "{}"),
    ("drops", "drops", "{}"),
    ("sim_misses_max", "max sim misses", "{}"),
    ("tcp_segments_per_msg_median", "segs/msg", "{:.2f}"),
    ("empty_reads_per_msg_median", "empty reads/msg", "{:.3f}"),
    ("ack_rearms_per_msg_median", "ACK re-arms/msg", "{:.3f}"),
    ("keepalives_unanswered", "KA unanswered", "{}"),
    ("keepalive_answers_late", "KA late", "{}"),
    ("keepalive_max_rtt_ms", "max KA rtt ms", "{:.0f}"),
    ("engine_keepalive_max_lag_ms", "engine max KA lag ms", "{:.0f}"),
)


def _median_rows(medians: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for m in medians:
        row = dict(m)
        row["us_per_msg_range"] = f"{m['us_per_msg_min']:.2f}-{m['us_per_msg_max']:.2f}"
        row["engine_us_per_msg_range"] = (f"{m['engine_us_per_msg_min']:.2f}-"
                                          f"{m['engine_us_per_msg_max']:.2f}")
        rows.append([fmt.format(row[key]) for key, _, fmt in MEDIAN_COLUMNS])
    return rows


def median_table(medians: Sequence[dict[str, Any]]) -> str:
    """``load_medians`` as aligned text."""
    return _text_table([title for _, title, _ in MEDIAN_COLUMNS], _median_rows(medians))


def median_markdown(medians: Sequence[dict[str, Any]]) -> str:
    """``load_medians`` as a Markdown table."""
    return _markdown_table([title for _, title, _ in MEDIAN_COLUMNS], _median_rows(medians))


def kernel_table(results: Sequence[PairResult], anchors: dict[str, str]) -> str:
    lines = [f"{'kernel':<22} {'ours /s':>12} {'anchor /s':>12} {'ratio':>8}  anchor"]
    for r in results:
        lines.append(f"{r.name:<22} {r.subject_per_s:>12.4g} {r.anchor_per_s:>12.4g} "
                     f"{r.ratio:>7.2f}x  {anchors.get(r.name, '')} ({r.unit})")
    return "\n".join(lines)


def kernel_markdown(results: Sequence[PairResult], anchors: dict[str, str]) -> str:
    lines = ["| kernel | ours (per s) | anchor (per s) | ratio | anchor | unit |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.subject_per_s:.4g} | {r.anchor_per_s:.4g} | "
                     f"{r.ratio:.2f}x | {anchors.get(r.name, '')} | {r.unit} |")
    return "\n".join(lines)


def gate_markdown(outcomes: Sequence[GateOutcome]) -> str:
    lines = ["| case | ratio | baseline | change | result |", "|---|---|---|---|---|"]
    for o in outcomes:
        base = f"{o.baseline_ratio:.3f}" if o.baseline_ratio is not None else "-"
        change = f"{o.change:+.1%}" if o.change is not None else "-"
        lines.append(f"| {o.name} | {o.ratio:.3f} | {base} | {change} | "
                     f"{'ok' if o.passed else 'REGRESSION'} |")
    return "\n".join(lines)


def plot_load(results: Sequence[LoadResult], out_dir: Path,
              latencies: dict[str, list[float]] | None = None) -> list[Path]:
    """Throughput and CPU against sessions, and a latency CDF; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    by_client: dict[str, list[LoadResult]] = {}
    for r in results:
        by_client.setdefault(f"{r.client}{' tls' if r.tls else ''}", []).append(r)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, rs in sorted(by_client.items()):
        rs = sorted(rs, key=lambda r: r.sessions)
        ax1.plot([r.sessions for r in rs], [r.cores_used for r in rs], marker="o", label=label)
        ax2.plot([r.sessions for r in rs], [r.us_per_msg for r in rs], marker="o", label=label)
    ax1.set(xlabel="concurrent sessions", ylabel="client CPU (cores)", title="CPU vs sessions")
    ax2.set(xlabel="concurrent sessions", ylabel="CPU us per message", title="cost per message")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend()
    path = out_dir / "load_cpu.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    if latencies:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, values in sorted(latencies.items()):
            if values:
                xs = sorted(values)
                ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=label)
        ax.set(xlabel="added latency (ms)", ylabel="fraction of messages", title="latency CDF")
        ax.grid(True, alpha=0.3)
        ax.legend()
        path = out_dir / "latency_cdf.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written

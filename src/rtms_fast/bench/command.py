"""``rtms-fast bench kernels|load|compare|pair|gate``: the benchmark suites outside pytest.

- ``kernels``: every native kernel beside its anchor, one table (and ``--json``).
- ``load``: a ramp of concurrent sessions through rtms-fast's engine.
- ``compare``: the same load through rtms-fast, the official SDK and the naive
  trio-websocket client, side by side.
- ``pair``: this checkout's engine against another's (``--baseline-src``), both at once on
  halves of one simulator's sessions (see ``rtms_fast.bench.pair``).
- ``gate``: the regression gate (see ``rtms_fast.bench.gate``).
Each writes a Markdown report (and PNG plots when matplotlib is installed)
into ``--report-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_BASELINE = Path("benchmarks") / "baseline.json"


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench",
                       help="run benchmark suites (kernels, load, compare, pair, gate)")
    p.add_argument("suite", choices=["kernels", "load", "compare", "pair", "gate"])
    p.add_argument("--sessions", default="100",
                   help="sessions, or a comma-separated ramp (load/compare), e.g. 100,500,1000")
    p.add_argument("--duration", type=float, default=10.0, help="media seconds per run")
    p.add_argument("--codec", choices=["l16", "pcma", "g722"], default="pcma")
    p.add_argument("--participants", type=int, default=1)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--sweep-ms", type=float, default=20.0)
    p.add_argument("--tls-backend", default="native",
                   help="load/compare with --tls: who runs the engine's media TLS: native, "
                        "native-openssl or python, or several comma-separated (each one "
                        "measured in the same series)")
    p.add_argument("--clients", default="engine,sdk,naive",
                   help="compare: which clients, comma-separated")
    p.add_argument("--baseline-src", type=Path, default=None,
                   help="pair: another checkout's src folder (its native module built)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--report-dir", type=Path, default=Path("bench-report"))
    p.add_argument("--cases", default="", help="kernels/gate: comma-separated case names")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    p.add_argument("--update-baseline", action="store_true")
    p.add_argument("--repeats", type=int, default=None,
                   help="gate: measurements per case (default 3); load/compare: rounds of "
                        "every configuration, interleaved, with medians (default 1); pair: "
                        "rounds (default 3)")
    p.add_argument("--threshold", type=float, default=None,
                   help="gate: allowed fractional drop of the ratio (default per case / 0.35)")
    p.set_defaults(func=cmd_bench)


def _emit(args: argparse.Namespace, title: str, table: str, markdown: str,
          summary: Any, plots: list[Path] | None = None) -> None:
    from rtms_fast.bench.report import machine_description

    args.report_dir.mkdir(parents=True, exist_ok=True)
    report = args.report_dir / f"{args.suite}.md"
    body = [f"# rtms-fast bench {args.suite}", "", f"Machine: {machine_description()}", "",
            f"Command: `rtms-fast {' '.join(sys.argv[1:])}`", "", markdown, ""]
    for plot in plots or []:
        body += [f"![{plot.stem}]({plot.name})", ""]
    report.write_text("\n".join(body), encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(title)
        print(table)
        print(f"\nreport: {report}")


def _kernels(args: argparse.Namespace) -> int:
    from rtms_fast.bench.kernels import CASES, AnchorUnavailable, KernelCase
    from rtms_fast.bench.report import kernel_markdown, kernel_table
    from rtms_fast.bench.timing import measure_pair

    names = [n for n in args.cases.split(",") if n] or list(CASES)
    results, anchors, unavailable = [], {}, {}
    for name in names:
        try:
            case: KernelCase = CASES[name]()
        except AnchorUnavailable as exc:
            unavailable[name] = str(exc)
            continue
        anchors[name] = case.anchor_name
        results.append(measure_pair(case.name, case.subject, case.anchor, case.items_subject,
                                    case.items_anchor, unit=case.unit))
    summary = {"kernels": [r.as_dict() | {"anchor": anchors[r.name]} for r in results],
               "unavailable": unavailable}
    _emit(args, "kernel throughput (median of interleaved rounds)",
          kernel_table(results, anchors), kernel_markdown(results, anchors), summary)
    return 0


def _load_like(args: argparse.Namespace, clients: list[str]) -> int:
    from rtms_fast.bench.load import TLS_BACKENDS, load_medians, run_load
    from rtms_fast.bench.report import (
        load_markdown,
        load_table,
        median_markdown,
        median_table,
        plot_load,
    )

    ramp = [int(s) for s in str(args.sessions).split(",") if s]
    backends = [b for b in str(args.tls_backend).split(",") if b]
    unknown = sorted(set(backends) - set(TLS_BACKENDS))
    if unknown or not backends:
        print(f"bench: --tls-backend takes {', '.join(TLS_BACKENDS)} (comma-separated), "
              f"got {args.tls_backend!r}", file=sys.stderr)
        return 2
    repeats = 1 if args.repeats is None else args.repeats
    if repeats < 1:
        print("bench: --repeats must be >= 1", file=sys.stderr)
        return 2
    results = []
    # Rounds outermost: the machine's speed drifts, so every configuration gets a run in
    # each stretch of it instead of all its runs in one.
    for _round in range(repeats):
        for sessions in ramp:
            for client in clients:
                for backend in (backends if client == "engine" and args.tls else [backends[0]]):
                    result = run_load(client, sessions=sessions, duration_s=args.duration,
                                      codec=args.codec, participants=args.participants,
                                      tls=args.tls, sweep_ms=args.sweep_ms,
                                      tls_backend=backend)
                    results.append(result)
                    if not args.json:
                        print(f"  {client:>7} x {sessions:<5} {result.tls_label:>14} "
                              f"{result.us_per_msg:8.2f} us/msg {result.cores_used:6.3f} cores"
                              f"  {result.messages_received}/{result.messages_sent} msgs",
                              flush=True)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    latencies = {f"{r.client} x{r.sessions}": r.latency_samples_ms for r in results}
    plots = plot_load(results, args.report_dir, latencies)
    summary: dict[str, Any] = {"runs": [r.as_dict() for r in results]}
    if len(results) == 1:
        summary.update(results[0].as_dict())
    medians = load_medians(results)
    if repeats > 1:
        summary["medians"] = medians
    by_client = {r.client: r for r in results if r.sessions == ramp[-1]}
    if "engine" in by_client:
        ours = by_client["engine"].us_per_msg
        summary["ratios_vs_engine"] = {c: r.us_per_msg / ours for c, r in by_client.items()
                                       if c != "engine" and ours > 0}
    table, markdown = load_table(results), load_markdown(results)
    if repeats > 1:
        table += f"\n\nmedians of {repeats} rounds\n" + median_table(medians)
        markdown += f"\n\nMedians of {repeats} rounds:\n\n" + median_markdown(medians)
    _emit(args, f"{args.suite}: {args.codec}, {'wss' if args.tls else 'ws'}",
          table, markdown, summary, plots)
    return 0


def _pair(args: argparse.Namespace) -> int:
    import statistics

    from rtms_fast.bench.pair import PairRound, check_tree, run_pair

    if args.baseline_src is None:
        print("bench: pair needs --baseline-src (another checkout's src folder)",
              file=sys.stderr)
        return 2
    try:
        check_tree(args.baseline_src)
        sessions = int(args.sessions)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    rounds = 3 if args.repeats is None else args.repeats
    if rounds < 1 or sessions < 1:
        print("bench: --repeats and --sessions must be >= 1", file=sys.stderr)
        return 2

    def show(index: int, r: PairRound) -> None:
        if not args.json:
            print(f"  round {index + 1}: this {r.current_us:.2f} us/msg, baseline "
                  f"{r.baseline_us:.2f} us/msg, ratio {r.ratio:.3f}", flush=True)

    results = run_pair(args.baseline_src, sessions=sessions, duration_s=args.duration,
                       sweep_ms=args.sweep_ms, codec=args.codec, tls=args.tls, rounds=rounds,
                       on_round=show)
    ratios = [r.ratio for r in results]
    header = "round  this us/msg  baseline us/msg  ratio  messages (this/baseline)  drops"
    rows = [f"{i + 1:>5}  {r.current_us:11.2f}  {r.baseline_us:15.2f}  {r.ratio:5.3f}  "
            f"{r.current_messages:>12}/{r.baseline_messages:<12}  "
            f"{r.current_drops}/{r.baseline_drops}" for i, r in enumerate(results)]
    median = statistics.median(ratios)
    table = "\n".join([header, *rows, f"median ratio {median:.3f} "
                                       f"(range {min(ratios):.3f}-{max(ratios):.3f})"])
    markdown = "\n".join([
        f"{sessions} sessions per engine, {args.codec}, {'wss' if args.tls else 'ws'}, "
        f"{args.sweep_ms:g} ms sweep; baseline `{args.baseline_src}`", "",
        "| round | this us/msg | baseline us/msg | ratio |", "|---|---|---|---|",
        *[f"| {i + 1} | {r.current_us:.2f} | {r.baseline_us:.2f} | {r.ratio:.3f} |"
          for i, r in enumerate(results)], "",
        f"Median ratio {median:.3f} (range {min(ratios):.3f}-{max(ratios):.3f})."])
    summary = {"rounds": [{"this_us_per_msg": r.current_us, "baseline_us_per_msg": r.baseline_us,
                           "ratio": r.ratio, "this_messages": r.current_messages,
                           "baseline_messages": r.baseline_messages,
                           "this_drops": r.current_drops, "baseline_drops": r.baseline_drops}
                          for r in results],
               "median_ratio": median}
    _emit(args, f"pair: {args.codec}, {'wss' if args.tls else 'ws'}", table, markdown, summary)
    return 0


def _gate(args: argparse.Namespace) -> int:
    from rtms_fast.bench.gate import format_outcomes, load_baseline, run_gate, save_baseline
    from rtms_fast.bench.kernels import GATED_CASES, run_case
    from rtms_fast.bench.report import gate_markdown

    names = [n for n in args.cases.split(",") if n] or list(GATED_CASES)
    baseline = {} if args.update_baseline else load_baseline(args.baseline)
    outcomes = run_gate(names, run_case, baseline,
                        repeats=3 if args.repeats is None else args.repeats,
                        threshold=args.threshold)
    if args.update_baseline:
        save_baseline(args.baseline, outcomes, args.threshold or 0.35)
    summary = {"cases": [{"name": o.name, "ratio": o.ratio, "baseline": o.baseline_ratio,
                          "passed": o.passed} for o in outcomes]}
    _emit(args, "regression gate", format_outcomes(outcomes), gate_markdown(outcomes), summary)
    missing = [n for n in names if n not in baseline]
    if missing and not args.update_baseline:
        print(f"gate: no baseline for {', '.join(missing)} (not gated)", file=sys.stderr)
    return 0 if all(o.passed for o in outcomes) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    if args.suite == "kernels":
        return _kernels(args)
    if args.suite == "load":
        return _load_like(args, ["engine"])
    if args.suite == "compare":
        return _load_like(args, [c for c in args.clients.split(",") if c])
    if args.suite == "pair":
        return _pair(args)
    return _gate(args)

"""The benchmark's report: targets met or not, the tables, the plot, bench/README.md's section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.settings import (
    CHURN_PER_S,
    PACED_RPS,
    ROOT,
    TARGET_ALLOW_LOOP_RATIO,
    TARGET_AUDIT_GROWTH,
    TARGET_BUILD_S,
    TARGET_CHECK_GROWTH,
    TARGET_DENY_LOOP_RATIO,
    TARGET_LOOKUP_RATIO,
    TARGET_P99_MS,
    TARGET_P999_MS,
    TARGET_RATIO,
    TARGET_RSS_MB,
)


def _floors(result: dict[str, Any]) -> str:
    """The imports floor as a pod loads the client, and as the bench's server does (through a
    kubeconfig file, whose loader a pod never imports); older results have only the first."""
    floor = f"{result['rss_floor_mb']:.1f} MB"
    kubeconfig = result.get("rss_floor_kubeconfig_mb")
    if kubeconfig is None:
        return floor
    return f"{floor} in a pod, {kubeconfig:.1f} MB with the kubeconfig loader this server uses"


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    big = result["cases"][-1]
    lookup = result["lookup_ratio"]
    rows = [
        (f"throughput / bare ASGI ({big['core']} core)", f">= {TARGET_RATIO}", f"{big['ratio']:.2f}", big["ratio"] >= TARGET_RATIO),
        ("p99 at 1,000 req/s", f"<= {TARGET_P99_MS} ms", f"{big['p99_ms']:.2f} ms", big["p99_ms"] <= TARGET_P99_MS),
        ("p99.9 at 1,000 req/s", f"<= {TARGET_P999_MS} ms", f"{big['p999_ms']:.2f} ms", big["p999_ms"] <= TARGET_P999_MS),
        ("20k objects listed and indexed", f"<= {TARGET_BUILD_S} s", f"{result['registry_build_s']:.2f} s", result["registry_build_s"] <= TARGET_BUILD_S),
        (f"RSS under load ({big['core']} core)", f"<= {TARGET_RSS_MB:.0f} MB", f"{big['rss_mb']:.1f} MB (imports alone: {_floors(result)})", big["rss_mb"] <= TARGET_RSS_MB),
        ("GC pauses over 2 ms under load", "0", f"{big['gc_pauses_over_2ms']} (longest <= {big['gc_pause_max_ms']:g} ms)", big["gc_pauses_over_2ms"] == 0),
        ("decision cost at 100k / small registry", f"<= {TARGET_LOOKUP_RATIO}", f"{lookup:.2f}", lookup <= TARGET_LOOKUP_RATIO),
    ]  # fmt: skip
    for case in _server_cases(result):
        if case["entries"] != big["entries"]:
            continue
        core, kinds = case["core"], case["kinds"]
        rows += [
            (f"server time, an allow / the bare app's ({core} core)", f"<= {TARGET_ALLOW_LOOP_RATIO}",
             f"{kinds['allow']['ratio']:.2f} ({kinds['allow']['loop_us']:.0f} / {kinds['allow']['bare_loop_us']:.0f} µs)",
             kinds["allow"]["ratio"] <= TARGET_ALLOW_LOOP_RATIO),
            (f"server time, a denial with its audit record / the bare app's ({core} core)", f"<= {TARGET_DENY_LOOP_RATIO}",
             f"{kinds['deny']['ratio']:.2f} ({kinds['deny']['loop_us']:.0f} / {kinds['deny']['bare_loop_us']:.0f} µs)",
             kinds["deny"]["ratio"] <= TARGET_DENY_LOOP_RATIO),
        ]  # fmt: skip
        if core != big["core"]:
            rows.append((f"throughput / bare ASGI ({core} core)", f">= {TARGET_RATIO}",
                         f"{case['ratio']:.2f}", case["ratio"] >= TARGET_RATIO))  # fmt: skip
    if "churn_p99_ms" in big:
        rows.append((
            f"p99 at 1,000 req/s under {CHURN_PER_S} registry changes/s", f"<= {TARGET_P99_MS} ms",
            f"{big['churn_p99_ms']:.2f} ms ({big['churn_per_s']} changes/s reached)",
            big["churn_p99_ms"] <= TARGET_P99_MS,
        ))  # fmt: skip
    if "check" in result:
        check = result["check"]
        biggest = check["cases"][-1]
        rows.append((
            f"seguard check: µs per manifest at {biggest['manifests']:,} / at {check['cases'][0]['manifests']:,}",
            f"<= {TARGET_CHECK_GROWTH}", f"{check['growth']:.2f} ({biggest['seconds']:.1f} s for {biggest['manifests']:,})",
            check["growth"] <= TARGET_CHECK_GROWTH,
        ))  # fmt: skip
    if "audit" in result:
        audit = result["audit"]
        peak = max(audit["table"]["peak_rss_mb"], audit["json"]["peak_rss_mb"])
        grown = peak / audit["peak_rss_1mb_file_mb"]
        rows.append((
            f"seguard audit's peak RSS, {audit['file_mb']} MiB file / 1 MiB file",
            f"<= {TARGET_AUDIT_GROWTH}", f"{grown:.2f} ({peak:.0f} MB)", grown <= TARGET_AUDIT_GROWTH,
        ))  # fmt: skip
    return [(name, target, got, ok) for name, target, got, ok in rows]


def _server_cases(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every server run with its per-kind figures, by size, the compiled core first."""
    cases = [c for c in [*result.get("other_cases", []), *result["cases"]] if "kinds" in c]
    return sorted(cases, key=lambda c: (c["entries"], c["core"] != "compiled"))


def _kinds_table(result: dict[str, Any]) -> list[str]:
    cases = _server_cases(result)
    if not cases:
        return []
    lines = [
        "",
        "The server's own time per request, by kind: the event loop's CPU under wrk at saturation "
        "(µs a request), and in brackets its ratio to the bare app's under the same requests, "
        "measured in the same run; the throughput ratio and the RSS under load of the same server; "
        f"the imports alone take {_floors(result)}.",
        "",
        "| entries | core | allow | mutation | denial, audited | bare app | throughput ratio | RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        kinds = case["kinds"]
        cells = " | ".join(
            f"{kinds[k]['loop_us']:.0f} ({kinds[k]['ratio']:.2f})"
            for k in ("allow", "mutate", "deny")
        )
        bare_us = [kinds[k]["bare_loop_us"] for k in ("allow", "mutate", "deny")]
        bare = f"{min(bare_us):.0f} to {max(bare_us):.0f}"
        lines.append(
            f"| {case['entries']:,} | {case['core']} | {cells} | {bare} | {case['ratio']:.2f} | {case['rss_mb']:.1f} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    from webhook.connections import MAX_CONNECTIONS

    lines = [
        f"Measured {result['date']} on {result['machine']}, `python bench/run.py{' --quick' if result['quick'] else ''}`.",
        "",
        f"The {result['cases'][-1]['core']} core (what the image runs), with its latency at a fixed rate:",
        "",
        "| entries | req/s | bare ASGI req/s | ratio | CPU µs/req | p50 ms | p99 ms | p99.9 ms | bare p50 / p99 ms | RSS MB | GC pauses > 2 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in result["cases"]:
        bare = (
            f"{case['baseline_p50_ms']:.2f} / {case['baseline_p99_ms']:.2f}"
            if "baseline_p50_ms" in case
            else "-"
        )
        lines.append(
            f"| {case['entries']:,} | {case['throughput_rps']:,} | {case['baseline_rps']:,} | {case['ratio']:.2f} | "
            f"{case['cpu_us_per_request']} | {case['p50_ms']:.2f} | {case['p99_ms']:.2f} | {case['p999_ms']:.2f} | "
            f"{bare} | {case['rss_mb']:.1f} | {case['gc_pauses_over_2ms']} |"
        )
    lines += _kinds_table(result)
    lines += [
        "",
        f"20k objects listed (paged, official client, raw JSON) and indexed: {result['registry_build_s']:.2f} s. "
        f"Decision cost in process, the same requests at each size: a free host {result['lookup_us']['free_0']:.1f} µs at 0 entries "
        f"and {result['lookup_us']['free_100k']:.1f} µs at 100k; a colliding host {result['lookup_us']['conflict_1k']:.1f} µs at 1k "
        f"and {result['lookup_us']['conflict_100k']:.1f} µs at 100k (worst ratio {result['lookup_ratio']:.2f}).",
        "",
        *(
            [
                f"The whole endpoint in process at 100k (body, parse, decision, audit record, events, answer; no HTTP or TLS): "
                f"an allow {result['endpoint_us']['allow']:.1f} µs, a mutation {result['endpoint_us']['mutate']:.1f} µs, "
                f"a denial {result['endpoint_us']['deny']:.1f} µs."
            ]
            if "endpoint_us" in result
            else []
        ),
        *(
            [
                "",
                f"Recording a request in the metrics (its result, a finding, its latency): "
                f"{result['metrics_us']['ours']:.2f} µs with plain counters, "
                f"{result['metrics_us']['client']:.2f} µs with prometheus-client's (what the server uses); the difference "
                f"is {(result['metrics_us']['client'] - result['metrics_us']['ours']) / result['cases'][-1]['cpu_us_per_request'] * 100:.1f}% "
                f"of the server's CPU time per request ({result['cases'][-1]['cpu_us_per_request']:.0f} µs).",
            ]
            if "metrics_us" in result
            else []
        ),
        *(
            [
                "",
                "The shortcuts the server keeps, each against what it stands in for (µs a call): "
                + "; ".join(
                    f"{name.split(':')[0]} {ours:.3f} against {theirs:.3f}"
                    for name, (ours, theirs) in result["shortcuts_us"].items()
                )
                + ".",
            ]
            if "shortcuts_us" in result
            else []
        ),
        *(
            [
                "",
                f"RSS after the latency runs with registry churn at {result['entries']:,} entries: "
                f"{result['cases'][-1].get('rss_after_churn_mb', 0):.1f} MB. "
                f"Each idle TLS connection the server holds at {result['entries']:,} entries: "
                f"{result['cases'][-1]['idle_connection_kb']:.1f} KB of RSS (1,000 connections "
                f"made and held; the bound, --max-connections, is {MAX_CONNECTIONS:,}).",
            ]
            if "idle_connection_kb" in result["cases"][-1]
            else []
        ),
        *(
            [
                "",
                "`seguard check <folder> -o json` over a GitOps repository (one host in fifty held by "
                "another namespace, one in a hundred a wildcard): "
                + "; ".join(
                    f"{c['manifests']:,} manifests {c['seconds']:.1f} s ({c['us_per_manifest']} µs each, "
                    f"peak RSS {c['peak_rss_mb']:.0f} MB)"
                    for c in result["check"]["cases"]
                )
                + ".",
            ]
            if "check" in result
            else []
        ),
        *(
            [
                "",
                "`seguard serve` once ready, by registry size: following an API server (the Deployment's case) "
                + "; ".join(
                    f"{c['objects']:,} objects {c['rss_mb']:.0f} MB (peak {c['peak_mb']:.0f} MB, ready in {c['startup_s']:.1f} s)"
                    for c in result["serve_memory"]["api"]
                )
                + "; reading ServiceEntries from files (`--registry-dir`) "
                + "; ".join(
                    f"{c['objects']:,} {c['rss_mb']:.0f} MB"
                    for c in result["serve_memory"]["files"]
                )
                + ".",
            ]
            if "serve_memory" in result
            else []
        ),
        *(
            [
                "",
                f"`seguard audit --file` over a {result['audit']['file_mb']} MiB audit file "
                f"({result['audit']['records']:,} records): as a table {result['audit']['table']['seconds']:.1f} s, "
                f"peak RSS {result['audit']['table']['peak_rss_mb']:.0f} MB; as JSON lines "
                f"{result['audit']['json']['seconds']:.1f} s, {result['audit']['json']['peak_rss_mb']:.0f} MB "
                f"(over a 1 MiB file: {result['audit']['peak_rss_1mb_file_mb']:.0f} MB).",
            ]
            if "audit" in result
            else []
        ),
        *(
            [
                "",
                f"The core compiled with mypyc ({result['compiled']['modules']} modules, built in "
                f"{result['compiled']['build_s']:.0f} s; as the image builds it), in process, "
                "compiled / Python µs: "
                + "; ".join(
                    f"{kind} {result['compiled']['compiled'][part][kind]:.1f} / {result['compiled']['pure'][part][kind]:.1f}"
                    for part, kinds in (
                        ("decision_us", ("free_100k", "conflict_100k")),
                        ("endpoint_us", ("allow", "mutate", "deny")),
                    )
                    for kind in kinds
                )
                + ".",
            ]
            if result.get("compiled")
            else []
        ),
        "",
        "| target | wanted | measured | |",
        "|---|---|---|---|",
    ]
    for name, target, got, ok in verdicts(result):
        lines.append(f"| {name} | {target} | {got} | {'met' if ok else 'gap'} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = result["cases"]
    labels = [f"{c['entries']:,}" for c in cases]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.25
    for offset, key, name in (
        (-width, "p50_ms", "p50"),
        (0.0, "p99_ms", "p99"),
        (width, "p999_ms", "p99.9"),
    ):
        left.bar(
            [i + offset for i in range(len(cases))], [c[key] for c in cases], width, label=name
        )
    left.axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=1, label="p99 target")
    left.set_xticks(range(len(cases)), labels)
    left.set_xlabel("registry entries")
    left.set_ylabel("ms at the client")
    left.set_title(f"Latency at {PACED_RPS:,} requests/s")
    left.legend()
    right.bar(
        [i - 0.2 for i in range(len(cases))],
        [c["throughput_rps"] for c in cases],
        0.4,
        label="seguard",
    )
    right.bar(
        [i + 0.2 for i in range(len(cases))],
        [c["baseline_rps"] for c in cases],
        0.4,
        label="bare ASGI",
    )
    right.set_xticks(range(len(cases)), labels)
    right.set_xlabel("registry entries")
    right.set_ylabel("requests/s at saturation")
    right.set_title("Throughput, same uvicorn TLS settings")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _replace_between(path: Path, start: str, end: str, text: str) -> None:
    content = path.read_text()
    if start in content and end in content:
        head, rest = content.split(start, 1)
        _, tail = rest.split(end, 1)
        path.write_text(f"{head}{start}\n{text}{end}{tail}")


def update_readme(table: str, result: dict[str, Any]) -> None:
    """The whole table in bench/README.md, and the server's time by kind in README.md."""
    _replace_between(
        ROOT / "bench" / "README.md", "<!-- bench:start -->", "<!-- bench:end -->", table
    )
    kinds = _kinds_table(result)
    if kinds:
        summary = "\n".join([f"Measured {result['date']} on {result['machine']}.", *kinds[1:]])
        _replace_between(
            ROOT / "README.md",
            "<!-- bench:kinds:start -->",
            "<!-- bench:kinds:end -->",
            summary + "\n",
        )

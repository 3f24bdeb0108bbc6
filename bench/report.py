"""The report: ``results.md`` (tables), ``results.json`` (everything measured) and
``results.png`` (a bar chart) in the results directory.

The summary table has one row per headline metric with Columba's value, Dovecot's, and the
ratio Columba ÷ Dovecot; whether higher or lower is better is said on the row (throughput:
higher; time and memory: lower). The chart shows every ratio turned into "Columba relative
to Dovecot, > 1 = Columba better" (throughput ratio as is, time/memory ratios inverted).
Targets from the issue are checked here and reported, never asserted. The PNG is drawn with
matplotlib when it is installed (``.venv/bin/pip install matplotlib``); otherwise skipped.

When the ``columba-s3pg`` peer ran, a second table compares Columba on the object-storage stack
(S3 on SeaweedFS + PostgreSQL) with Columba on posix + SQLite, ratio s3pg ÷ posix, for the
LMTP and FETCH workloads (``storage_summary`` in results.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.load_imap import OPS

Row = dict[str, Any]
Metric = tuple[str, str, float | None, float | None, str, str]

POSIX, S3PG = "columba", "columba-s3pg"
STORAGE_TITLE = "Object storage stack: S3 (SeaweedFS) + PostgreSQL vs posix + SQLite"
FETCH_PHASES = {
    "body": "FETCH bodies (BODY.PEEK[])",
    "header": "FETCH headers (BODY.PEEK[HEADER])",
    "body_pass": "FETCH bodies, one pass after emptying the local cache",
}


def _get(data: dict[str, Any], peer: str, key: str) -> dict[str, Any] | None:
    value = data["results"].get(peer, {}).get(key)
    return value if isinstance(value, dict) else None


def _ratio(columba: float | None, dovecot: float | None) -> float | None:
    if columba is None or dovecot is None or dovecot == 0:
        return None
    return columba / dovecot


def _row(  # noqa: PLR0917 - one positional per table column reads best at the call sites
    workload: str,
    metric: str,
    columba: float | None,
    dovecot: float | None,
    better: str,
    unit: str,
    target: str = "",
    met: bool | None = None,
) -> Row:
    return {
        "workload": workload,
        "metric": metric,
        "unit": unit,
        "columba": columba,
        "dovecot": dovecot,
        "ratio": _ratio(columba, dovecot),
        "better": better,
        "target": target,
        "met": met,
    }


def _growth(item: dict[str, Any] | None) -> float | None:
    if item is None or "memory_idle" not in item or "memory_before" not in item:
        return None
    return float(item["memory_idle"]["pss_mb"] - item["memory_before"]["pss_mb"])


def _errors(item: dict[str, Any] | None) -> int | None:
    return None if item is None else int(item.get("errors", 0))


def _num(item: dict[str, Any] | None, field: str) -> float | None:
    value = None if item is None else item.get(field)
    return value if isinstance(value, int | float) else None


def _workload_order(key: str) -> int:
    return next(
        (i for i, p in enumerate(("imap", "lmtp", "big", "idle", "fetch")) if key.startswith(p)), 9
    )


def _lmtp_name(key: str) -> str:
    _, conns, rcpts = key.split("_")
    return f"LMTP, {conns[1:]} conn, {rcpts[1:]} rcpt"


def _fetch_metrics(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[Metric]:
    """FETCH rows for two peers' ``fetch`` results: per phase msg/s, MB/s, chunk p50, errors."""
    item = a or b or {}
    out: list[Metric] = []
    for phase, title in FETCH_PHASES.items():
        pa = (a or {}).get("phases", {}).get(phase)
        pb = (b or {}).get("phases", {}).get(phase)
        if pa is None and pb is None:
            continue
        name = f"{title}, {item.get('messages')} msgs, {item.get('clients')} clients"
        out += [
            (
                name,
                "messages/s",
                _num(pa, "messages_per_sec"),
                _num(pb, "messages_per_sec"),
                "higher",
                "1/s",
            ),
            (name, "MB/s", _num(pa, "mb_per_sec"), _num(pb, "mb_per_sec"), "higher", ""),
            (
                name,
                f"p50 of a {item.get('chunk')}-message FETCH",
                _num(pa, "chunk_p50_ms"),
                _num(pb, "chunk_p50_ms"),
                "lower",
                "ms",
            ),
            (name, "errors", _num(pa, "errors"), _num(pb, "errors"), "lower", ""),
        ]
    return out


def storage_summary(data: dict[str, Any]) -> list[Row]:
    """Rows comparing the s3pg peer with the posix Columba peer (ratio = s3pg ÷ posix)."""
    results = data["results"]
    if S3PG not in results:
        return []
    keys = sorted(
        (k for k in results[S3PG] if k.startswith("lmtp_") or k == "fetch"), key=_workload_order
    )
    metrics: list[Metric] = []
    for key in keys:
        posix, s3pg = _get(data, POSIX, key), _get(data, S3PG, key)
        if key == "fetch":
            metrics += _fetch_metrics(posix, s3pg)
            continue
        name = _lmtp_name(key)
        metrics += [
            (
                name,
                "messages/s",
                _num(posix, "messages_per_sec"),
                _num(s3pg, "messages_per_sec"),
                "higher",
                "1/s",
            ),
            (
                name,
                "deliveries/s (per recipient)",
                _num(posix, "deliveries_per_sec"),
                _num(s3pg, "deliveries_per_sec"),
                "higher",
                "1/s",
            ),
            (
                name,
                "p50 of a transaction",
                _num(posix, "p50_ms"),
                _num(s3pg, "p50_ms"),
                "lower",
                "ms",
            ),
            (
                name,
                "p99 of a transaction",
                _num(posix, "p99_ms"),
                _num(s3pg, "p99_ms"),
                "lower",
                "ms",
            ),
            (name, "errors", _num(posix, "errors"), _num(s3pg, "errors"), "lower", ""),
        ]
    return [
        {
            "workload": workload,
            "metric": metric,
            "unit": unit,
            "posix": posix_value,
            "s3pg": s3pg_value,
            "ratio": None if metric == "errors" else _ratio(s3pg_value, posix_value),
            "better": better,
        }
        for workload, metric, posix_value, s3pg_value, better, unit in metrics
    ]


def _cpu_ms(item: dict[str, Any] | None, rate: str, cores: int) -> float | None:
    """Server CPU milliseconds per unit of `rate` (per command, per message)."""
    if not item or not item.get(rate) or item.get("server_cpu_share") is None:
        return None
    return float(item["server_cpu_share"]) * cores / float(item[rate]) * 1000.0


def summarize(data: dict[str, Any]) -> list[Row]:
    """Headline rows (ratios and targets) from the raw results."""
    cores = len(data.get("meta", {}).get("machine", {}).get("server_cpus", [])) or 1
    rows: list[Row] = []
    keys: list[str] = []
    for peer in ("columba", "dovecot"):
        keys.extend(k for k in data["results"].get(peer, {}) if k not in keys)
    keys.sort(key=_workload_order)  # stable: run order within a workload
    for key in keys:
        c, d = _get(data, "columba", key), _get(data, "dovecot", key)
        if key.startswith("imap_c"):
            cv = c.get("commands_per_sec") if c else None
            dv = d.get("commands_per_sec") if d else None
            ratio = _ratio(cv, dv)
            ok = None if c is None else _errors(c) == 0 and (ratio is None or ratio >= 1.0)
            name = f"IMAP mix, {key[6:]} clients"
            rows.append(
                _row(name, "commands/s", cv, dv, "higher", "1/s", "≥ 1.0× Dovecot, 0 errors", ok)
            )
            rows.append(
                _row(
                    name,
                    "sessions/s",
                    c.get("sessions_per_sec") if c else None,
                    d.get("sessions_per_sec") if d else None,
                    "higher",
                    "1/s",
                )
            )
            rows.append(
                _row(
                    name,
                    "server CPU per command",
                    _cpu_ms(c, "commands_per_sec", cores),
                    _cpu_ms(d, "commands_per_sec", cores),
                    "lower",
                    "ms",
                )
            )
            rows.append(_row(name, "errors", _errors(c), _errors(d), "lower", ""))
        elif key.startswith("lmtp_"):
            cv = c.get("messages_per_sec") if c else None
            dv = d.get("messages_per_sec") if d else None
            ratio = _ratio(cv, dv)
            ok = None if c is None else _errors(c) == 0 and (ratio is None or ratio >= 1.0)
            name = _lmtp_name(key)
            rows.append(
                _row(name, "messages/s", cv, dv, "higher", "1/s", "≥ 1.0× Dovecot, 0 errors", ok)
            )
            rows.append(
                _row(
                    name,
                    "server CPU per message",
                    _cpu_ms(c, "messages_per_sec", cores),
                    _cpu_ms(d, "messages_per_sec", cores),
                    "lower",
                    "ms",
                )
            )
            rows.append(_row(name, "errors", _errors(c), _errors(d), "lower", ""))
        elif key == "big":
            count = (c or d or {}).get("messages", 0)
            name = f"Big mailbox ({count} msgs)"
            targets = {"SELECT": 0.2, "FETCH_FLAGS": 0.5, "SORT_DATE": 1.0}
            ops = [*targets, "SEARCH_HEADER", "RESYNC_1000"]
            for op in ops:
                co = (c or {}).get("ops", {}).get(op)
                do = (d or {}).get("ops", {}).get(op)
                cv = co.get("median_s") if co and co.get("supported") else None
                dv = do.get("median_s") if do and do.get("supported") else None
                limit = targets.get(op)
                met = None if limit is None or c is None else (cv is not None and cv < limit)
                row = _row(
                    name,
                    op + " time",
                    cv,
                    dv,
                    "lower",
                    "s",
                    f"< {limit} s" if limit else "",
                    met,
                )
                if co is not None and not co.get("supported"):
                    row["note"] = "Columba: not supported"
                notes = [
                    f"{who} first session {item['first_s']:.2f} s"
                    for who, item in (("Columba", co), ("Dovecot", do))
                    if item
                    and item.get("supported")
                    and item["first_s"] > 2 * item["median_s"] + 0.05
                ]
                if notes:
                    row["note"] = "; ".join([row.get("note", ""), *notes]).strip("; ")
                rows.append(row)
        elif key.startswith("idle_"):
            clients = int(key[5:])
            name = f"{clients} IDLE clients"
            cm = (c or {}).get("memory_idle", {}).get("pss_mb")
            dm = (d or {}).get("memory_idle", {}).get("pss_mb")
            held = c is not None and c.get("established") == clients and _errors(c) == 0
            target = "< 1 GB" if clients >= 10_000 else ""
            met = (held and cm is not None and cm < 1024) if target and c else None
            rows.append(_row(name, "server memory (PSS)", cm, dm, "lower", "MiB", target, met))
            rows.append(
                _row(
                    name,
                    "memory growth (PSS, vs before connecting)",
                    _growth(c),
                    _growth(d),
                    "lower",
                    "MiB",
                )
            )
            rows.append(
                _row(
                    name,
                    "server memory (RSS sum)",
                    (c or {}).get("memory_idle", {}).get("rss_mb"),
                    (d or {}).get("memory_idle", {}).get("rss_mb"),
                    "lower",
                    "MiB",
                )
            )
            rows.append(
                _row(
                    name,
                    "notify all",
                    (c or {}).get("notify_all_s"),
                    (d or {}).get("notify_all_s"),
                    "lower",
                    "s",
                )
            )
            rows.append(_row(name, "errors", _errors(c), _errors(d), "lower", ""))
        elif key == "fetch":
            for name, metric, cv, dv, better, unit in _fetch_metrics(c, d):
                rows.append(_row(name, metric, cv, dv, better, unit))
    return rows


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if unit == "s":
            return f"{value:.3f}"
        if unit == "ms" and abs(value) < 10:
            return f"{value:.2f}"
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    lines = [
        "# Columba vs Dovecot benchmark",
        "",
        f"Run: {meta['started']}, mode **{meta['mode']}**, {meta['duration_s']:.0f} s; "
        f"machine: {meta['machine']['cpus']} CPUs, servers pinned to CPUs "
        f"{meta['machine']['server_cpus']}, load generator unpinned "
        f"({meta['machine']['load_processes']} processes); Python {meta['machine']['python']}.",
        "",
        f"**Note:** {meta['note']}.",
        "",
        "Peers:",
        "",
    ]
    for peer in meta["peers"].values():
        lines.append(f"- **{peer['label']}**, {peer['version']}")
        lines.extend(f"  - {note}" for note in peer["notes"])
    lines += [
        "",
        "## Summary (ratio = Columba ÷ Dovecot)",
        "",
        "| workload | metric | Columba | Dovecot | ratio | better | target | met |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for row in data["summary"]:
        unit = row["unit"]
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        if row.get("note"):
            met = (met + " " + row["note"]).strip()
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "–"
        lines.append(
            f"| {row['workload']} | {row['metric']}{f' ({unit})' if unit else ''} | "
            f"{_fmt(row['columba'], unit)} | {_fmt(row['dovecot'], unit)} | {ratio} | "
            f"{row['better']} | {row['target']} | {met} |"
        )
    if not data["summary"]:
        lines.append("| (no Columba or Dovecot results in this run) | | | | | | | |")
    if any(row["met"] is False for row in data["summary"]):
        lines += [
            "",
            "Where a target is not met, `bench/PROFILE.md` has the profile: where the time "
            "goes and what design change would reach the target.",
        ]
    lines += _storage_section(data)
    lines += _details(data)
    return "\n".join(lines) + "\n"


def _storage_section(data: dict[str, Any]) -> list[str]:
    rows = storage_summary(data)
    if not rows:
        return []
    lines = [
        "",
        f"## {STORAGE_TITLE}",
        "",
        "Columba with the object-storage issue's configuration (`@fs_defaults = s3` on a local "
        "SeaweedFS `weed mini`, `@fs_dictmap_defaults = postgresql` on a local PostgreSQL 15, "
        "zstd + global crypt keys, a 64 MB fscache) next to Columba's single-node "
        "configuration (posix objects + SQLite dict), same workloads, same CPUs. "
        "**ratio = s3pg ÷ posix** (throughput: higher is better; times: lower is better). "
        "The S3 and PostgreSQL servers share the CPUs with Columba; their CPU is shown below "
        "as *backend*. The one-pass FETCH empties the s3pg peer's fscache first, so every "
        "body comes from S3 (decrypted, decompressed); the posix peer has no such cache and "
        "reads its files from the OS page cache.",
        "",
        "| workload | metric | posix + SQLite | S3 + PostgreSQL | ratio | better |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        unit = row["unit"]
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "–"
        lines.append(
            f"| {row['workload']} | {row['metric']}{f' ({unit})' if unit else ''} | "
            f"{_fmt(row['posix'], unit)} | {_fmt(row['s3pg'], unit)} | {ratio} | "
            f"{row['better']} |"
        )
    return lines


def _cpu_items(items: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The CPU-measured items of one peer, FETCH phases flattened (``fetch_body``, ...)."""
    out: dict[str, dict[str, Any]] = {}
    for key, item in items.items():
        if not isinstance(item, dict):
            continue
        if key.startswith(("imap", "lmtp")):
            out[key] = item
        elif key == "fetch":
            out.update({f"fetch_{p}": v for p, v in item.get("phases", {}).items()})
    return out


def _details(data: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    results = data["results"]
    peers = list(results)
    mix_keys = sorted(
        {k for r in results.values() for k in r if k.startswith("imap_c")},
        key=lambda k: int(k[6:]),
    )
    for key in mix_keys:
        lines += [
            "",
            f"## IMAP mix, {key[6:]} clients: per command",
            "",
            "| command | "
            + " | ".join(f"{p} /s | {p} p50 ms | {p} p99 ms" for p in peers)
            + " | ratio /s |",
            "|---|" + "---:|" * (3 * len(peers) + 1),
        ]
        for op in OPS:
            cells = []
            rates = {}
            for peer in peers:
                stats = results[peer].get(key, {}).get("ops", {}).get(op)
                if stats is None:
                    cells.append("– | – | –")
                    continue
                rates[peer] = stats["per_sec"]
                cells.append(
                    f"{stats['per_sec']:.1f} | {stats['p50_ms']:.2f} | {stats['p99_ms']:.2f}"
                )
            ratio = _ratio(rates.get("columba"), rates.get("dovecot"))
            lines.append(
                f"| {op} | " + " | ".join(cells) + f" | {f'{ratio:.2f}×' if ratio else '–'} |"
            )
    lines += [
        "",
        "## CPU (share of all cores during the workload)",
        "",
        "| workload | " + " | ".join(f"{p} server | loadgen (vs {p})" for p in peers) + " |",
        "|---|" + "---:|---:|" * len(peers),
    ]
    cpu = {peer: _cpu_items(results[peer]) for peer in peers}
    keys: list[str] = []
    for items in cpu.values():
        keys.extend(k for k in items if k not in keys)
    for key in sorted(keys, key=_workload_order):
        cells = []
        for peer in peers:
            item = cpu[peer].get(key, {})
            server = item.get("server_cpu_share")
            loadgen = item.get("loadgen_cpu_share")
            backend = item.get("backend_cpu_share")
            cells.append(
                (f"{server * 100:.0f}%" if server is not None else "–")
                + (f" + {backend * 100:.0f}% backend" if backend is not None else "")
            )
            cells.append(f"{loadgen * 100:.0f}%" if loadgen is not None else "–")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    errors = [
        f"- {peer} {key}: {sample}"
        for peer, items in results.items()
        for key, item in items.items()
        if isinstance(item, dict)
        for sample in ([item["failed"]] if "failed" in item else item.get("error_samples", []))
    ]
    if errors:
        lines += ["", "## Errors (samples)", "", *errors[:40]]
    return lines


def chart(data: dict[str, Any], path: Path) -> bool:
    """Draw the ratio chart; False when matplotlib is not available."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels: list[str] = []
    values: list[float] = []
    for row in data["summary"]:
        if row["ratio"] is None or row["metric"] == "errors" or row["ratio"] == 0:
            continue
        relative = row["ratio"] if row["better"] == "higher" else 1 / row["ratio"]
        labels.append(f"{row['workload']}: {row['metric']}")
        values.append(relative)
    if not values:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(values) + 1.5))
    colors = ["#2a7f3f" if v >= 1 else "#b03a2e" for v in values]
    positions = list(range(len(values)))[::-1]
    ax.barh(positions, values, color=colors)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    for y, v in zip(positions, values, strict=True):
        ax.text(v, y, f" {v:.2f}×", va="center", fontsize=7)
    ax.set_xlabel("Columba relative to Dovecot (> 1 = Columba better; log scale)")
    ax.set_title(f"Columba vs Dovecot ({data['meta']['mode']} run, {data['meta']['started']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write results.md, results.json and (if possible) results.png; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = out_dir / "results.json"
    if S3PG in data["results"]:
        data["storage_summary"] = storage_summary(data)
    json_path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    written.append(json_path)
    png = out_dir / "results.png"
    if chart(data, png):
        written.append(png)
    text = markdown(data)
    if png in written:
        text += "\n![ratios](results.png)\n"
    md = out_dir / "results.md"
    md.write_text(text)
    written.append(md)
    return written

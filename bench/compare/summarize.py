"""Medians of the JSON lines bench/compare/run.sh collected, as a table.

    python3 summarize.py RESULTS.jsonl [REDIS_VERSION]
"""

import json
import statistics
import sys


def main():
    rows = {}
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if d.get("scenario") == "queue":  # eddy: three systems in one line
            rows.setdefault("raw loop (redis crate)", []).append(
                (d["raw_msgs_per_s"], d.get("raw_p50_ms"), d.get("raw_p99_ms"))
            )
            rows.setdefault("eddy receive + ack", []).append(
                (d["msgs_per_s"], d.get("p50_ms"), d.get("p99_ms"))
            )
            rows.setdefault("eddy consumer loop", []).append(
                (d["loop_msgs_per_s"], d.get("loop_p50_ms"), d.get("loop_p99_ms"))
            )
        else:
            name = f'{d["system"]} {d["version"]}'
            rows.setdefault(name, []).append((d["msgs_per_s"], d.get("p50_ms"), d.get("p99_ms")))

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else float("nan")

    eddy = med([r[0] for r in rows.get("eddy receive + ack", [])])
    title = "queue end to end (produce -> consume -> ack)"
    if len(sys.argv) > 2 and sys.argv[2]:
        title += f", Redis {sys.argv[2]}"
    print(title)
    header = ("system", "msg/s (median)", "runs", "p50 ms", "p99 ms", "eddy / this")
    table = [header]
    for name, rs in rows.items():
        rate = med([r[0] for r in rs])
        table.append(
            (
                name,
                f"{rate:,.0f}",
                " ".join(f"{r[0]:,.0f}" for r in rs),
                f"{med([r[1] for r in rs]):.2f}",
                f"{med([r[2] for r in rs]):.2f}",
                f"{eddy / rate:.2f}" if rate else "-",
            )
        )
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()

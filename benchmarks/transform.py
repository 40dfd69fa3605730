"""Window transform throughput: the polars pipeline against a per-event loop and a bare read.

One window's worth of landed segments (default 1,000,000 lines in 8 segments, exactly the
receiver's landing format) is written under data/ from the seeded demo generator, copied with
fresh uuid/$insert_id per copy so the copies are distinct events while the generator's ~3%
retries stay duplicates. Over those same files it runs three phases, each in a fresh process
so its peak RSS is its own (VmHWM), alternating for --rounds rounds, and prints medians
(events/s = landed lines, duplicates included, per wall second of the phase's work):

  pipeline   what the raw_events, interactions and impressions assets run: read_landing ->
             raw_events (dedupe within the window and against an earlier window's ids) ->
             interactions + skip_reasons + impressions, and write_atomic of the three parquet
             files. Reported with and without the writes, plus a per-step breakdown
             (read_landing, earlier ids, raw_events, each write, interactions, ...), and the
             rate of its read and writes alone: its ceiling were every transform free.
  per-event  a Django-view-style loop: orjson.loads each line, dedupe by event_id in a set
             (seeded with the earlier window's ids), lower-case the type, look up the weight,
             WeightTable.is_relevant, and build interaction dicts and one impression dict per
             item shown (no writes).
  read-only  read_landing over the same files and nothing else: the reader's ceiling.

Other work on the machine shows as a high load average and wall time well above CPU time.
The asset checks, Dagster metadata and DuckDB view refresh of `publish` are not included, and
the raw_events frame is handed over in memory instead of being re-read from its parquet file.

    .venv/bin/python benchmarks/transform.py [--events 1000000] [--rounds 3] [--segments 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import polars as pl

from amp_personalize.assets.raw_events import earlier_event_ids
from amp_personalize.events import EventShapeError, extract, load_weights
from amp_personalize.events.windows import window_key
from amp_personalize.lake.parquet import partition_path, published, write_atomic
from amp_personalize.landing.segments import (
    SEALED_SUFFIX,
    sealed_segments,
    segment_stem,
)
from amp_personalize.transforms.interactions import (
    impressions,
    interactions,
    skip_reasons,
)
from amp_personalize.transforms.landing import read_landing
from amp_personalize.transforms.raw_events import lag_seconds, raw_events
from amp_personalize.transforms.weights import weights_frame

WINDOW_MS = 3_600_000
WINDOW_START_MS = 1_768_435_200_000  # the generator's end: 2026-01-15 00:00 UTC
WINDOW = window_key(WINDOW_START_MS)
EARLIER = window_key(WINDOW_START_MS - WINDOW_MS)
PHASES = ("pipeline", "per-event", "read-only")
TARGETS = (("pipeline events/s", ">=", 400_000), ("pipeline / per-event", ">=", 6), ("pipeline / read-only", ">=", 0.7),
           ("pipeline peak RSS MiB", "<", 2048))


# -- the data ------------------------------------------------------------------------------


def write_window(root: Path, n: int, segments: int, earlier: int) -> None:
    """n landed lines of one window in `segments` sealed segments, and an earlier window's ids."""
    from amp_personalize.demo.generator import generate_events

    heads, ids = [], []
    for event in generate_events():
        try:
            heads.append(orjson.dumps(extract(event, "event"))[:-1])
        except EventShapeError:  # the receiver rejects these; they never land
            continue
        ids.append([event[k].encode() for k in ("uuid", "$insert_id") if isinstance(event.get(k), str)])

    def copy_of(i: int) -> bytes:
        """Line i: copy i // len(heads) of a base event, its ids' first 8 hex digits the copy number."""
        copy, base = divmod(i, len(heads))
        line = heads[base]
        for old in ids[base]:
            line = line.replace(old, b"%08x" % copy + old[8:])
        return line

    directory = root / "landing" / WINDOW
    directory.mkdir(parents=True)
    per_segment = -(-n // segments)
    for seq, first in enumerate(range(0, n, per_segment), 1):
        lines = range(first, min(first + per_segment, n))
        received = [WINDOW_START_MS + i * WINDOW_MS // n for i in lines]
        body = b"".join(copy_of(i) + b',"received_at":%d}\n' % r for i, r in zip(lines, received))
        (directory / (segment_stem(received[0], "bench", seq) + SEALED_SUFFIX)).write_bytes(body)

    # A previous window's ids (distinct copies, so no overlap): raw_events dedupes against them.
    first_copy = -(-n // len(heads))
    earlier_ids = [(b"%08x" % (first_copy + i // len(ids)) + ids[i % len(ids)][0][8:]).decode() for i in range(earlier)]
    write_atomic(pl.DataFrame({"event_id": earlier_ids}, schema={"event_id": pl.String}),
                 partition_path(root / "lake", "raw_events", EARLIER))


def earlier_ids(lake: Path) -> pl.Series:
    """Every id of the windows before this one, for the per-event baseline's `seen` set."""
    paths = [p for p in published(lake, "raw_events") if p.stem < WINDOW]
    return pl.scan_parquet(paths).select("event_id").collect()["event_id"]


# -- the phases (each runs in its own process) ---------------------------------------------


def pipeline(root: Path) -> dict[str, float]:
    """The three assets' transforms and writes, timed step by step."""
    steps: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[step] = now - clock
        clock = now

    weights = weights_frame(load_weights())
    lake = root / "lake"

    def raw_events_asset() -> pl.DataFrame:  # `landed` is freed when the asset returns
        landed, _ = read_landing(sealed_segments(root / "landing", WINDOW))
        lap("read_landing")
        earlier = earlier_event_ids(lake, WINDOW, 60, 24, landed["event_id"])
        lap("earlier ids")
        raw, _ = raw_events(landed, earlier)
        lag_seconds(raw)
        lap("raw_events")
        return raw

    raw = raw_events_asset()
    write_atomic(raw, partition_path(lake, "raw_events", WINDOW))
    lap("write raw_events")
    inter = interactions(raw, weights)
    lap("interactions")
    skip_reasons(raw, weights)
    lap("skip_reasons")
    imps = impressions(raw, weights)
    lap("impressions")
    write_atomic(inter, partition_path(lake, "interactions", WINDOW))
    write_atomic(imps, partition_path(lake, "impressions", WINDOW))
    lap("write interactions+impressions")
    return steps


def per_event(root: Path) -> dict[str, float]:
    """What a Django view would do per event, in pure Python."""
    started = time.perf_counter()
    table = load_weights()
    weights, impression_types, is_relevant = table.weights, table.impression_types, table.is_relevant
    seen = set(earlier_ids(root / "lake").to_list())
    interaction_rows, impression_rows, skipped = [], [], 0
    loads = orjson.loads
    for path in sealed_segments(root / "landing", WINDOW):
        with open(path, "rb") as f:
            for line in f:
                r = loads(line)
                event_id = r["event_id"]
                if event_id in seen:
                    continue
                seen.add(event_id)
                event_type, items_shown = r["event_type"], r["items_shown"]
                if r["kind"] != "event" or not is_relevant(event_type, r["user_id"], r["item_id"], items_shown):
                    skipped += 1
                    continue
                event_type = event_type.lower()
                value = weights[event_type]
                event_time = r["event_time"] if r["event_time"] is not None else r["received_at"]
                if event_type in impression_types:
                    for position, item in enumerate(items_shown):
                        if item is None:  # an entry that was not an id: a gap in the positions
                            continue
                        impression_rows.append({
                            "event_id": event_id, "user_id": r["user_id"], "item_id": item,
                            "position": position, "impression_type": event_type,
                            "feed_type": r["feed_type"], "event_time": event_time, "event_value": value,
                        })
                else:
                    interaction_rows.append({
                        "event_id": event_id, "user_id": r["user_id"], "item_id": r["item_id"],
                        "event_type": event_type, "event_value": value, "event_time": event_time,
                        "session_id": r["session_id"], "recommendation_id": r["recommendation_id"],
                    })
    return {"total": time.perf_counter() - started}


def read_only(root: Path) -> dict[str, float]:
    started = time.perf_counter()
    read_landing(sealed_segments(root / "landing", WINDOW))
    return {"total": time.perf_counter() - started}


def peak_rss_mib() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries the forking parent's peak over exec."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def run_phase(phase: str, root: Path) -> dict:
    """One phase in a fresh interpreter: its step timings and its peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--root", str(root)],
                         stdout=subprocess.PIPE, check=True).stdout
    result = json.loads(out)
    return {**result, "seconds": sum(result["steps"].values())}


# -- the report ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="landed lines in the window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--earlier", type=int, help="event ids of earlier windows to dedupe against (default: --events)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        work = {"pipeline": pipeline, "per-event": per_event, "read-only": read_only}[args.phase]
        cpu = time.process_time()
        steps = work(args.root)
        return print(json.dumps({"steps": steps, "cpu": time.process_time() - cpu, "rss": peak_rss_mib()}))

    n = args.events
    runs: dict[str, list[dict]] = {phase: [] for phase in PHASES}
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "data") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_window(root, n, args.segments, n if args.earlier is None else args.earlier)
        size = sum(p.stat().st_size for p in sealed_segments(root / "landing", WINDOW))
        print(f"wrote {n:,} landed lines ({size / 2**20:,.0f} MiB, {args.segments} segments) "
              f"in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        load_before = os.getloadavg()[0]  # other work on the machine skews every number below
        for round_no in range(args.rounds):
            for phase in PHASES:
                runs[phase].append(run_phase(phase, root))
                print(f"round {round_no + 1} {phase}: {runs[phase][-1]['seconds']:.2f}s", file=sys.stderr)

    med = {p: {k: statistics.median(r[k] for r in runs[p]) for k in ("seconds", "cpu", "rss")} for p in PHASES}
    steps = {s: statistics.median(r["steps"][s] for r in runs["pipeline"]) for s in runs["pipeline"][0]["steps"]}
    writes = sum(v for s, v in steps.items() if s.startswith("write"))
    transforms_only = statistics.median(
        r["seconds"] - sum(v for s, v in r["steps"].items() if s.startswith("write")) for r in runs["pipeline"]
    )
    rate = {p: n / med[p]["seconds"] for p in PHASES}
    print(f"\nwindow transform: {n:,} landed lines, {size / 2**20:,.0f} MiB, {args.segments} segments; "
          f"{os.cpu_count()} CPUs, polars {pl.__version__}; median of {args.rounds} alternating rounds; "
          f"load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"{'phase':<28} {'events/s':>10} {'seconds':>8} {'CPU s':>7} {'peak RSS MiB':>13}")
    for phase in PHASES:
        m = med[phase]
        print(f"{phase:<28} {rate[phase]:>10,.0f} {m['seconds']:>8.2f} {m['cpu']:>7.2f} {m['rss']:>13,.0f}")
    print(f"{'pipeline without the writes':<28} {n / transforms_only:>10,.0f} {transforms_only:>8.2f}")
    # The best the pipeline could do if every transform between the read and the writes took no
    # time: a target above this line needs a faster reader or writer, not faster transforms.
    read_and_writes = statistics.median(
        sum(v for s, v in r["steps"].items() if s == "read_landing" or s.startswith("write")) for r in runs["pipeline"]
    )
    print(f"{'read + writes only':<28} {n / read_and_writes:>10,.0f} {read_and_writes:>8.2f}")
    print("\npipeline steps (median s): " + ", ".join(f"{s} {v:.2f}" for s, v in steps.items()) + f"; writes total {writes:.2f}")
    # What each ratio target asks of the pipeline, beside what its read and writes alone take.
    print(f"\n6x per-event needs the whole pipeline within {n / (6 * rate['per-event']):.2f}s; "
          f"the read-only pass alone took {med['read-only']['seconds']:.2f}s")
    print(f"0.7 of read-only needs the whole pipeline within {med['read-only']['seconds'] / 0.7:.2f}s; "
          f"its read and writes alone took {read_and_writes:.2f}s")

    values = {
        "pipeline events/s": rate["pipeline"],
        "pipeline / per-event": rate["pipeline"] / rate["per-event"],
        "pipeline / read-only": rate["pipeline"] / rate["read-only"],
        "pipeline peak RSS MiB": med["pipeline"]["rss"],
    }
    print()
    for name, op, target in TARGETS:
        value = values[name]
        met = value >= target if op == ">=" else value < target
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
        print(f"{name:<28} {shown:>10}   target {op} {target:<9,} {'met' if met else 'MISSED'}")

if __name__ == "__main__":
    main()

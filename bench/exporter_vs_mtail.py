"""Log-metrics exporter vs google/mtail vs mawk, on the same generated log and rules.

    python bench/exporter_vs_mtail.py [--lines N] [--repeat K] [--tail-seconds S] [--rate R]
                                      [--keep DIR]

One-shot mode: generates a deterministic mixed log (nginx access lines and application
lines with levels, services and latencies), runs ``alertmail export --one-shot``
(as ``python -m receiver.cli export``), ``mtail --one_shot`` and a mawk program with the same four
metrics, checks that all three produce identical counts, and prints lines/s, CPU seconds
and peak RSS for each plus the ratios. Tailing mode (``--tail-seconds``, default 20):
appends R lines/s (default 20,000) to a file the exporter follows and reports its CPU use.

Fairness: every tool first runs once untimed (page cache warm for all; Python writes its
bytecode cache as an installed package has it), then K times (default 3) in turn; the
median run is reported. CPU is user + system time of the whole process tree, from
``wait4`` (threads and reaped children included: mtail's goroutines, the exporter's
workers). The exporter runs in its default single-process mode; the row ``exporter -j``
is the same run with one worker process per core (``one_shot_workers: 0``), which
shortens the wall-clock time but costs more CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
RE_REQ = r'"(?P<method>[A-Z]+) [^"\n]*" (?P<status>\d{3}) '
RE_RT = r"rt=(?P<seconds>[0-9.]+)"
RE_APP = r"level=(?P<level>[A-Z]+) service=(?P<service>[a-z]+)"
RE_LAT = r"latency_ms=(?P<ms>[0-9.]+)"

EXPORTER_YML = f"""
listen: 127.0.0.1:0
positions: "{{positions}}"
poll_interval: 250ms
sources:
  - {{path: "{{log}}", start: beginning}}
metrics:
  - name: http_requests_total
    type: counter
    match: '{RE_REQ}'
    labels: [method, status]
  - name: http_request_duration_seconds
    type: histogram
    match: '{RE_RT}'
    value: seconds
    buckets: {BUCKETS}
  - name: app_log_lines_total
    type: counter
    match: '{RE_APP}'
    labels: [service, level]
  - name: app_latency_seconds
    type: histogram
    match: '{RE_LAT}'
    value: ms
    scale: 0.001
    buckets: {BUCKETS}
"""

MTAIL_PROG = f"""
counter http_requests_total by method, status
histogram http_request_duration_seconds buckets {", ".join(map(str, BUCKETS))}
counter app_log_lines_total by service, level
histogram app_latency_seconds buckets {", ".join(map(str, BUCKETS))}

/{RE_REQ}/ {{
  http_requests_total[$method][$status]++
}}
/{RE_RT}/ {{
  http_request_duration_seconds = float($seconds)
}}
/{RE_APP}/ {{
  app_log_lines_total[$service][$level]++
}}
/{RE_LAT}/ {{
  app_latency_seconds = float($ms) / 1000.0
}}
"""

AWK_PROG = r"""
BEGIN { nb = split("@BUCKETS@", B, ",") }
function obs(name, v,   i) {
  for (i = 1; i <= nb; i++) if (v <= B[i] + 0) { H[name, i]++; break }
  if (i > nb) H[name, nb + 1]++
  HS[name] += v; HC[name]++
}
{
  if (match($0, /"[A-Z]+ [^"]*" [0-9][0-9][0-9] /)) {
    s = substr($0, RSTART + 1, RLENGTH - 1); sp = index(s, " ")
    req[substr(s, 1, sp - 1) "\t" substr(s, RLENGTH - 4, 3)]++
  }
  if (match($0, /rt=[0-9.]+/)) obs("http_request_duration_seconds", substr($0, RSTART + 3, RLENGTH - 3) + 0)
  if (match($0, /level=[A-Z]+ service=[a-z]+/)) {
    s = substr($0, RSTART + 6, RLENGTH - 6); sp = index(s, " ")
    app[substr(s, sp + 9) "\t" substr(s, 1, sp - 1)]++
  }
  if (match($0, /latency_ms=[0-9.]+/)) obs("app_latency_seconds", substr($0, RSTART + 11, RLENGTH - 11) / 1000.0)
}
END {
  for (k in req) { split(k, p, "\t"); printf "http_requests_total{method=\"%s\",status=\"%s\"} %d\n", p[1], p[2], req[k] }
  for (k in app) { split(k, p, "\t"); printf "app_log_lines_total{service=\"%s\",level=\"%s\"} %d\n", p[1], p[2], app[k] }
  split("http_request_duration_seconds app_latency_seconds", names, " ")
  for (n = 1; n <= 2; n++) { name = names[n]; c = 0
    for (i = 1; i <= nb + 1; i++) { c += H[name, i]; le = (i <= nb) ? B[i] + 0 : "+Inf"
      printf "%s_bucket{le=\"%s\"} %d\n", name, le, c }
    printf "%s_count %d\n%s_sum %.17g\n", name, HC[name], name, HS[name] }
}
""".replace("@BUCKETS@", ",".join(map(str, BUCKETS)))  # noqa: E501

SERVICES = ["checkout", "cart", "auth", "search", "payments", "users"]
LEVELS = ["DEBUG"] * 5 + ["INFO"] * 12 + ["WARN"] * 3 + ["ERROR"]
METHODS = ["GET"] * 8 + ["POST"] * 3 + ["PUT", "DELETE", "HEAD"]
STATUSES = ["200"] * 30 + ["201", "204", "301", "304", "400", "401", "403", "404", "404"]
STATUSES += ["500", "502", "503", "504"]
PATHS = ["/", "/api/v1/items", "/api/v1/items/{}", "/api/v1/cart/{}", "/static/app.{}.js"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0", "curl/8.5.0", "kube-probe/1.30"]
MSGS = ["request done", 'cache miss for "key {}"', "retrying upstream", "payment failed: timeout"]


def gen_lines(rng: random.Random, n: int, t0: int = 1_728_000_000) -> list[str]:
    out = []
    for i in range(n):
        ts = time.strftime("%d/%b/%Y:%H:%M:%S", time.gmtime(t0 + i // 500))
        if rng.random() < 0.6:
            path = rng.choice(PATHS).format(rng.randrange(10_000))
            rt = rng.randrange(0, 3000) / 1000 + 0.0005  # never exactly on a bucket bound
            ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            out.append(
                f"{ip} - - [{ts} +0000] "
                f'"{rng.choice(METHODS)} {path} HTTP/1.1" {rng.choice(STATUSES)} '
                f'{rng.randrange(100, 50_000)} "-" "{rng.choice(AGENTS)}" rt={rt:.4f}\n'
            )
        else:
            lat = rng.randrange(0, 6000) + 0.5
            msg = rng.choice(MSGS).format(rng.randrange(100))
            out.append(
                f"2024-10-04T{ts[12:]}.{i % 1000:03d}Z level={rng.choice(LEVELS)} "
                f"service={rng.choice(SERVICES)} latency_ms={lat} msg={msg!r}\n"
            )
    return out


def generate(path: Path, n: int, seed: int = 42) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for start in range(0, n, 100_000):
            fh.writelines(gen_lines(rng, min(100_000, n - start)))


def independent_counts(path: Path) -> dict[str, float]:
    """Reference counts in plain Python, line by line (for the correctness check)."""
    pats = [re.compile(p) for p in (RE_REQ, RE_APP)]
    out: dict[str, float] = {}
    with path.open() as fh:
        for line in fh:
            for name, pat in zip(("http_requests_total", "app_log_lines_total"), pats, strict=True):
                m = pat.search(line)
                if m:
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(m.groupdict().items()))
                    key = f"{name}{{{labels}}}"
                    out[key] = out.get(key, 0) + 1
    return out


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_exposition(text: str, names: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if (
            not m
            or m.group(1).split("_bucket")[0].removesuffix("_count").removesuffix("_sum")
            not in names
        ):
            continue
        labels = re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")
        labels = [
            (k, str(float(v)) if k == "le" and v != "+Inf" else v) for k, v in labels if k != "prog"
        ]
        key = m.group(1) + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}"
        out[key] = float(m.group(3))
    return out


def tree_rss_sampler(pid: int, stop: threading.Event, peaks: dict[int, int]) -> None:
    """Peak RSS (VmHWM, reset by exec) of the process and its children, sampled every 10 ms."""
    while not stop.is_set():
        pids = [pid]
        with contextlib.suppress(OSError):
            pids += [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        for p in pids:
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[p] = max(peaks.get(p, 0), int(line.split()[1]) * 1024)
            except OSError:
                pass
        time.sleep(0.01)


def measure(cmd: list[str], **kw: object) -> tuple[str, float, float, int, int]:
    """(stdout, wall s, CPU s incl. children, peak RSS of the process, sum of the tree's peaks)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
    stop, peaks = threading.Event(), dict[int, int]()
    sampler = threading.Thread(target=tree_rss_sampler, args=(proc.pid, stop, peaks), daemon=True)
    sampler.start()
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed with {proc.returncode}")
    return out, wall, ru.ru_utime + ru.ru_stime, peaks.get(proc.pid, 0), sum(peaks.values())


def one_shot(work: Path, n: int, repeat: int = 3) -> None:
    log = work / "bench.log"
    t = time.perf_counter()
    generate(log, n)
    size = log.stat().st_size
    print(f"generated {n:,} lines ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s: {log}")
    exporter_yml = EXPORTER_YML.replace("{log}", str(log))
    (work / "exporter.yml").write_text(exporter_yml.replace("{positions}", str(work / "pos.json")))
    (work / "exporter-j.yml").write_text(
        "one_shot_workers: 0\n" + exporter_yml.replace("{positions}", str(work / "pos-j.json"))
    )
    progs = work / "progs"
    progs.mkdir(exist_ok=True)
    (progs / "bench.mtail").write_text(MTAIL_PROG)
    (work / "bench.awk").write_text(AWK_PROG)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its .pyc files
    # The command users run (`alertmail export`, through its console script's module).
    alertmail = [sys.executable, "-m", "receiver.cli", "export", "--one-shot", "--config"]
    runs = {
        "exporter": [*alertmail, str(work / "exporter.yml")],
        "exporter -j": [*alertmail, str(work / "exporter-j.yml")],
        "mtail": ["mtail", "--one_shot", "--one_shot_format=prometheus", "--emit_prog_label=false",
                  "--progs", str(progs), "--logs", str(log), "--logtostderr"],
        "mawk": ["mawk", "-f", str(work / "bench.awk"), str(log)],
    }  # fmt: skip
    names = {"http_requests_total", "app_log_lines_total", "http_request_duration_seconds"}
    names.add("app_latency_seconds")
    results: dict[str, tuple[float, float, int, int]] = {}
    counts: dict[str, dict[str, float]] = {}
    kw = {"env": env, "cwd": ROOT, "stderr": subprocess.DEVNULL}
    for cmd in runs.values():  # warm-up: page cache, bytecode cache
        measure(cmd, **kw)
    samples: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, cmd in runs.items():
            out, wall, cpu, rss, tree = measure(cmd, **kw)
            samples[name].append((wall, cpu, rss, tree))
            counts[name] = parse_exposition(out, names)
    for name, got in samples.items():
        results[name] = sorted(got, key=lambda r: r[1])[len(got) // 2]  # median CPU run
        print(f"{name:12} CPU s per run: " + " ".join(f"{r[1]:.2f}" for r in got))
    ref = independent_counts(log)
    ok = True
    for name, c in counts.items():
        for key in set(c) | set(counts["exporter"]):
            a, b = c.get(key), counts["exporter"].get(key)
            same = a is not None and b is not None and abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1)
            if not same and not (key.endswith("_sum{}") and a and b and abs(a - b) < 1e-6 * abs(a)):
                print(f"MISMATCH {name}: {key} = {a} vs exporter {b}")
                ok = False
    for key, v in ref.items():
        if counts["exporter"].get(key) != v:
            print(f"MISMATCH reference: {key} = {v} vs exporter {counts['exporter'].get(key)}")
            ok = False
    print(f"counts identical across exporter, mtail, mawk and a Python reference: {ok}"
          f" ({len(counts['exporter'])} series)")  # fmt: skip
    print(f"\n{'':12}{'wall s':>8}{'lines/s':>12}{'CPU s':>8}{'lines/CPU s':>13}{'µs/line':>9}"
          f"{'RSS MB':>8}{'tree RSS MB':>12}")  # fmt: skip
    for name, (wall, cpu, rss, tree) in results.items():
        print(f"{name:12}{wall:8.2f}{n / wall:12,.0f}{cpu:8.2f}{n / cpu:13,.0f}{cpu / n * 1e6:9.2f}"
              f"{rss / 2**20:8.1f}{tree / 2**20:12.1f}")  # fmt: skip
    ours = n / results["exporter"][1]
    print(
        f"\nexporter vs mtail, lines per CPU second: {ours / (n / results['mtail'][1]):.1f}x "
        f"(target >= 8x); wall clock: {results['mtail'][0] / results['exporter'][0]:.1f}x"
    )
    print(
        f"exporter vs mawk,  lines per CPU second: {ours / (n / results['mawk'][1]):.2f}x "
        f"(target >= 0.6x); wall clock: {results['mawk'][0] / results['exporter'][0]:.2f}x"
    )
    if not ok:
        sys.exit(1)


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tailing(work: Path, seconds: float, rate: int) -> None:
    log = work / "tail.log"
    log.write_text("")
    cfg = work / "tail.yml"
    text = EXPORTER_YML.replace("{log}", str(log)).replace(
        "{positions}", str(work / "tailpos.json")
    )
    cfg.write_text(text.replace("127.0.0.1:0", "127.0.0.1:19146"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "receiver.cli", "export", "--config", str(cfg)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        lines = gen_lines(random.Random(7), rate)  # one second's worth, replayed
        c0, t0 = cpu_of(proc.pid), time.perf_counter()
        written = 0
        with log.open("a") as fh:
            while time.perf_counter() - t0 < seconds:
                due = int((time.perf_counter() - t0) * rate)
                while written < due:
                    k = min(due - written, 2000)
                    start = written % rate
                    fh.writelines(lines[start : start + k] if start + k <= rate else lines[start:])
                    written += min(k, rate - start)
                fh.flush()
                time.sleep(0.01)
        time.sleep(1.0)
        cpu, wall = cpu_of(proc.pid) - c0, time.perf_counter() - t0
        body = urllib.request.urlopen("http://127.0.0.1:19146/metrics", timeout=5).read().decode()
        m = re.search(r'alertmail_exporter_lines_read_total\{file="[^"]*"\} (\S+)', body)
        read = float(m.group(1)) if m else -1
        print(f"\ntailing: wrote {written:,} lines at {rate:,} lines/s for {seconds:.0f}s; "
              f"exporter read {read:,.0f}; CPU {cpu:.2f}s over {wall:.1f}s = "
              f"{100 * cpu / wall:.1f}% of one core (target < 25%)")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per tool (median shown)")
    ap.add_argument("--tail-seconds", type=float, default=20.0, help="0 skips tailing mode")
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--keep", help="work in this directory and keep it")
    args = ap.parse_args()
    for tool in ("mtail", "mawk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (Debian packages mtail and mawk)")
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-exporter-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        one_shot(work, args.lines, max(args.repeat, 1))
        if args.tail_seconds > 0:
            tailing(work, args.tail_seconds, args.rate)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

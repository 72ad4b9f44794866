#!/usr/bin/env python3
"""cimlake and the Windows-log hunting tools users would otherwise pick, on the same EVTX files and
the same SigmaHQ rules, end to end (raw logs in, rule matches out), whole processes.

Each tool runs --runs times; the order of the tools rotates from one round to the next, so drift
of a shared machine falls on every tool alike. Wall time is measured around the process, peak RSS
is the kernel's accounting of the finished process (wait4). The medians are printed as a Markdown
table, with the rules each tool loaded and its matches; then, from each tool's output of the last
round, the match count of every rule, side by side (also written as CSV with --out).

The peers are not built or installed by this script: point it at them (see BENCHMARKS.md, "Peers",
for the versions measured and how each was run).

    python3 benches/peers/compare.py --cimlake target/release/cimlake \\
        --hayabusa BIN --hayabusa-rules DIR --hayabusa-config DIR \\
        --chainsaw BIN --chainsaw-mapping FILE \\
        --zircolite zircolite.py --zircolite-python PYTHON --zircolite-config FILE \\
        [--data ../shared/corpus/evtx] [--sigma ../shared/corpus/sigma/rules/windows] [--runs 3] [--out DIR]
        [--hayabusa-data DIR --chainsaw-data DIR --zircolite-data DIR --events N]

--data is what cimlake reads (EVTX, XmlWinEventLog, …). The --PEER-data options give a peer the
same events in a shape it reads (xml_to_json.py writes them), when it cannot read --data: Hayabusa
reads EVTX and flat JSON, Chainsaw EVTX and JSON, Zircolite EVTX and evtx_dump JSON lines.

A tool whose options are not given is left out. Matches are (rule, event) pairs: each tool's output
has one entry per rule and event it matched (Zircolite: its per-rule `count`).
"""

import argparse
import collections
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CATEGORIES = ("process_creation", "network_connection")


def run(cmd, cwd, log):
    """Runs cmd; returns (wall s, peak RSS MiB). Fails loudly on a non-zero exit."""
    with open(log, "wb") as out:
        start = time.monotonic()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} exited with {code}; its output is in {log}")
    return wall, usage.ru_maxrss / 1024


def read_log(work):
    """What the tool printed in `work`, without terminal colours."""
    with open(os.path.join(work, "log"), errors="replace") as f:
        return re.sub(r"\x1b\[[0-9;]*m", "", f.read())


class Tool:
    name = ""

    def command(self, work):
        raise NotImplementedError

    def counts(self, work):
        """Matches per rule title, from the output of a run in `work`."""
        raise NotImplementedError

    def loaded(self, work):
        """What the tool said of the rules it loaded, from its log."""
        return ""


class Cimlake(Tool):
    name = "cimlake"

    def __init__(self, a):
        self.bin, self.a = os.path.abspath(a.cimlake), a

    def sql_dirs(self):
        return [x for c in CATEGORIES for x in ("--sql-dir", os.path.join(self.a.sigma, c))]

    def command(self, work):
        # Ingest every file into a new lake, then run every detection over all time.
        return [self.bin, "--lake", os.path.join(work, "lake"), "run", self.a.data, *self.sql_dirs()]

    def counts(self, work):
        n = collections.Counter()
        for c in CATEGORIES:
            out = subprocess.run([self.bin, "--lake", os.path.join(work, "lake"), "detect", *self.sql_dirs(),
                                  "--detection", f"sigma:{c}", "--format", "json"], capture_output=True, check=True).stdout
            for line in out.splitlines():
                n[json.loads(line)["rule_title"]] += 1
        return n

    def loaded(self, work):
        log = read_log(work)
        rules = [int(x) for x in re.findall(r"(\d+) Sigma rules", log)]
        failed = [int(x) for x in re.findall(r"(\d+) of them not compiled", log)]
        return f"{sum(rules) - sum(failed)} of {sum(rules)} compiled"


class Hayabusa(Tool):
    name = "Hayabusa"

    def __init__(self, a):
        self.a = a

    def command(self, work):
        a = self.a
        return [os.path.abspath(a.hayabusa), "csv-timeline", "-d", a.hayabusa_data or a.data, *(["-J"] if a.hayabusa_data else []),
                "-r", a.hayabusa_rules, "-c", a.hayabusa_config,
                "-w", "-q", "-K", "-C", "-O", "-m", "informational", "-t", str(a.threads), "-o", os.path.join(work, "out.csv")]

    def counts(self, work):
        with open(os.path.join(work, "out.csv"), newline="") as f:
            return collections.Counter(r["RuleTitle"] for r in csv.DictReader(f))

    def loaded(self, work):
        log = read_log(work)
        e = re.search(r"Rule parsing errors: ([\d,]+)", log)
        m = re.search(r"Detection rules enabled after channel filter: ([\d,]+)", log)
        if m:
            return f"{m.group(1)} enabled, {e.group(1) if e else 0} parse errors"
        # JSON input has no channel filter.
        m = re.search(r"Total detection rules: ([\d,]+)", log)
        return f"{m.group(1) if m else '?'} loaded, {e.group(1) if e else 0} parse errors"


class Chainsaw(Tool):
    name = "Chainsaw"

    def __init__(self, a):
        self.a = a

    def command(self, work):
        a = self.a
        return [os.path.abspath(a.chainsaw), "--no-banner", "--num-threads", str(a.threads), "hunt", a.chainsaw_data or a.data,
                *[x for c in CATEGORIES for x in ("-s", os.path.join(a.sigma, c))],
                "--mapping", a.chainsaw_mapping, "--skip-errors", "--json", "-o", os.path.join(work, "out.json")]

    def counts(self, work):
        return collections.Counter(d["name"] for d in json.load(open(os.path.join(work, "out.json"))))

    def loaded(self, work):
        log = read_log(work)
        m = re.search(r"Loaded (\d+) detection rules(?: \((\d+) not loaded\))?", log)
        return f"{m.group(1)} loaded, {m.group(2) or 0} not loaded" if m else "?"


class Zircolite(Tool):
    name = "Zircolite"

    def __init__(self, a):
        self.a = a

    def command(self, work):
        a = self.a
        # Raw SigmaHQ YAML, converted by pySigma at each run: its normal use with Sigma rules.
        return [a.zircolite_python, os.path.abspath(a.zircolite), "-e", a.zircolite_data or a.data,
                *(["-j", "--fileext", "jsonl"] if a.zircolite_data else []),
                *[x for c in CATEGORIES for x in ("-r", os.path.join(a.sigma, c))],
                "-p", "sysmon", "-p", "windows-logsources", "-c", a.zircolite_config,
                "-o", os.path.join(work, "out.json"), "-l", os.path.join(work, "zircolite.log")]

    def counts(self, work):
        n = collections.Counter()
        for r in json.load(open(os.path.join(work, "out.json"))):
            n[r["title"]] += r["count"]  # one entry per rule and file
        return n

    def loaded(self, work):
        log = read_log(work)
        m = re.search(r"(\d+) rules? (?:converted|loaded)", log, re.I)
        return f"{m.group(1)} converted" if m else "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "corpus", "evtx"))
    p.add_argument("--sigma", default=os.path.join(REPO, "..", "shared", "corpus", "sigma", "rules", "windows"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", help="a directory for the per-rule CSV and each tool's last output")
    p.add_argument("--cimlake", default=os.path.join(REPO, "target", "release", "cimlake"))
    for opt in ("hayabusa", "hayabusa-rules", "hayabusa-config", "chainsaw", "chainsaw-mapping", "zircolite",
                "zircolite-config"):
        p.add_argument(f"--{opt}")
    # A peer that cannot read --data reads the same events converted (benches/peers/xml_to_json.py).
    p.add_argument("--hayabusa-data", help="flat JSON lines (xml_to_json.py's flat/), read with -J")
    p.add_argument("--chainsaw-data", help="JSON arrays (xml_to_json.py's array/; a mapping of kind json)")
    p.add_argument("--zircolite-data", help="evtx_dump JSON lines (xml_to_json.py's evtx/), read with -j")
    p.add_argument("--events", type=int, help="the number of events in --data, for events/s")
    p.add_argument("--zircolite-python", default=sys.executable)
    a = p.parse_args()
    a.data, a.sigma = os.path.abspath(a.data), os.path.abspath(a.sigma)
    for d in ("hayabusa_data", "chainsaw_data", "zircolite_data"):
        if getattr(a, d):
            setattr(a, d, os.path.abspath(getattr(a, d)))
    tools = [Cimlake(a)]
    if a.hayabusa:
        tools.append(Hayabusa(a))
    if a.chainsaw:
        tools.append(Chainsaw(a))
    if a.zircolite:
        tools.append(Zircolite(a))

    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(a.data) for f in fs)
    root = tempfile.mkdtemp(prefix="cimlake-peers-")
    times = collections.defaultdict(list)
    for r in range(a.runs):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        for t in order:
            work = os.path.join(root, t.name)
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            times[t.name].append(run(t.command(work), work, os.path.join(work, "log")))
            print(f"round {r + 1}: {t.name} {times[t.name][-1][0]:.2f} s", file=sys.stderr)

    counts = {t.name: t.counts(os.path.join(root, t.name)) for t in tools}
    print(f"data: {a.data} ({size / 2**20:.1f} MiB); rules: {a.sigma} ({', '.join(CATEGORIES)}); "
          f"{a.runs} runs each, medians; {a.threads} threads\n")
    print("| tool | wall s | MiB/s of --data | events/s | peak RSS MiB | rules | matches | rules matched |")
    print("|---|---|---|---|---|---|---|---|")
    base = statistics.median(w for w, _ in times["cimlake"])
    for t in tools:
        wall = statistics.median(w for w, _ in times[t.name])
        rss = statistics.median(m for _, m in times[t.name])
        c = counts[t.name]
        ratio = "" if t.name == "cimlake" else f" ({wall / base:.1f}× cimlake)"
        eps = f"{a.events / wall:,.0f}" if a.events else ""
        print(f"| {t.name} | {wall:.2f}{ratio} | {size / 2**20 / wall:.1f} | {eps} | {rss:.0f} | {t.loaded(os.path.join(root, t.name))} "
              f"| {sum(c.values())} | {sum(1 for v in c.values() if v)} |")

    titles = sorted(set().union(*counts.values()))
    print("\n| rule | " + " | ".join(t.name for t in tools) + " |")
    print("|---|" + "---|" * len(tools))
    for title in titles:
        row = [counts[t.name].get(title, 0) for t in tools]
        mark = "" if len(set(row)) == 1 else " ≠"
        print(f"| {title}{mark} | " + " | ".join(str(x) for x in row) + " |")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "per_rule.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rule", *(t.name for t in tools)])
            for title in titles:
                w.writerow([title, *(counts[t.name].get(title, 0) for t in tools)])
        for t in tools:
            shutil.copytree(os.path.join(root, t.name), os.path.join(a.out, t.name), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("lake"))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

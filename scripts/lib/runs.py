"""The load scripts' runs, summarised: each kind of run's lines, as `record` / `cpu_run` in
scripts/lib/procs.sh appended them to a file of its own (requests/s, p50 ms, p99 ms, errors,
requests, and with cpu_run the server's CPU microseconds per request), become one table row
and the figures the ratios are made of. Imported by the scripts' own Python, not run.
"""
import os
import statistics


def number(text):
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read(runs, name):
    """The lines of one kind of run, each split into its fields."""
    with open(os.path.join(runs, name)) as f:
        return [line.split() for line in f if line.strip()]


class Kind:
    """One kind of run over all its runs: the mean of requests/s, the median p50, the worst
    p99, the errors (`?` when a run's output could not be read), and the CPU time per request
    over all the runs' requests (None without cpu_run)."""

    def __init__(self, lines):
        self.lines = lines
        self.runs = len(lines)
        self.rps = [number(l[0]) for l in lines]
        self.mean = statistics.fmean(self.rps) if lines else float("nan")
        self.p50 = statistics.median(number(l[1]) for l in lines)
        self.p99 = max(number(l[2]) for l in lines)
        self.failed_runs = sum(1 for l in lines if l[3] != "0")
        self.errors = "?" if any(l[3] == "?" for l in lines) else sum(int(l[3]) for l in lines)
        self.cpu = None
        if lines and all(len(l) > 5 for l in lines):
            served = sum(int(l[4]) for l in lines)
            spent = sum(number(l[5]) * int(l[4]) for l in lines)
            self.cpu = spent / served if served else float("nan")

    def row(self, label, cpu_note=""):
        cpu = "" if self.cpu is None else f"{self.cpu:.2f}{cpu_note}"
        return (f"| {label} | {self.runs} | {self.mean:.0f} | {self.p50:.2f} | {self.p99:.2f} "
                f"| {self.errors} | {cpu} |")


def header(cpu_column):
    return ("| run | runs | requests/s (mean) | p50 ms (median) | p99 ms (worst) | errors | "
            f"{cpu_column} |\n|---|---:|---:|---:|---:|---:|---:|")


def write_errors(runs, kinds):
    """The number of runs with errors, for the shell to judge."""
    with open(os.path.join(runs, "errors"), "w") as f:
        f.write(str(sum(k.failed_runs for k in kinds)))

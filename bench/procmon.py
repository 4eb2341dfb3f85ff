"""Peak resident memory of a process tree, sampled from /proc (standard library, Linux only)."""

from __future__ import annotations

import os
import threading

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _processes():
    """{pid: (ppid, rss bytes)} of every process we may read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[21]) * PAGE_SIZE)
    return table


def tree_rss(root):
    """Summed RSS of `root` and all its descendants (pages shared between forks count once each)."""
    table = _processes()
    children = {}
    for pid, (ppid, _rss) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
        todo.extend(children.get(pid, []))
    return total


class PeakTreeRss:
    """Samples tree_rss(pid) every `interval` seconds in a thread; stop() returns the peak in bytes."""

    def __init__(self, pid, interval=0.1):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak

"""Runs a benchmark's own script again as a child process and returns the JSON line it prints last.

Peak RSS cannot be reset inside a process, so every memory measurement gets a
fresh one. glibc's mmap threshold is fixed so freed blocks go back to the OS,
as they would on a long-running host, and the child uses 2 threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_child(script: str, *args: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, script, "child", *args], env=env, capture_output=True, text=True,
                         timeout=3600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])

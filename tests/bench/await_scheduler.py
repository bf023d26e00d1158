#!/usr/bin/env python3
"""await_scheduler.py INFO_FILE PID: waits until the scheduler with process
id PID, started with --info-file INFO_FILE and cluster.scheduler HOST:0,
has bound a port and named it in INFO_FILE; prints HOST:PORT, the address
for the other daemons' cluster.scheduler. Exits 1 if the scheduler dies
first. (A port picked beforehand and handed to the scheduler is free only
until another program takes it; a port the scheduler bound is its own.)"""

import json
import os
import sys
import time


def main():
    path, pid = sys.argv[1], int(sys.argv[2])
    while not os.path.exists(path):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(f"await_scheduler: the scheduler (pid {pid}) ended before it wrote {path}")
        time.sleep(0.02)
    with open(path) as f:
        info = json.load(f)
    print(f"{info['host']}:{info['port']}")


if __name__ == "__main__":
    main()

"""A child program that keeps the job worker's contract (``RUN_DIR`` last; progress.jsonl; a result line),
for the tests of ``hearth.jobs.child``: ``chatty`` prints MODE's megabytes of output, ``hang`` starts a
grandchild and waits forever (until its process group is killed)."""

import json
import subprocess
import sys
import time
from pathlib import Path

mode, root = sys.argv[1], Path(sys.argv[2])
with (root / "progress.jsonl").open("a", encoding="utf-8") as events:

    def emit(row: dict) -> None:
        events.write(json.dumps(row) + "\n")
        events.flush()

    if mode == "chatty":
        line = "x" * 1023 + "\n"
        for i in range(2048):  # 2 MiB on stdout and 1 MiB on stderr, far past a pipe's 64 KiB
            sys.stdout.write(line)
            if i % 2:
                sys.stderr.write(line)
        sys.stdout.flush()
        for i in range(1, 4):
            emit({"type": "progress", "done": i, "total": 3, "message": f"part {i}"})
        emit({"type": "result", "printed": 3 * 1024 * 1024})
    elif mode == "hang":
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        emit({"type": "progress", "done": 0, "total": 1, "message": "waiting", "grandchild": grandchild.pid})
        while True:
            time.sleep(1)
    elif mode == "fail":
        print("something went wrong on purpose", file=sys.stderr)
        sys.exit(3)

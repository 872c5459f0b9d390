"""What a build of each prepared framework template costs in the local sandbox.

    python -m benchmarks.template_builds [FRAMEWORK ...]   # default: every prepared one

For each framework: a fresh workspace from its prepared template (SANDBOX_TEMPLATES, default
./.data/templates), `npm run build` under the sandbox's default limits (bubblewrap when it
runs), its wall time, the CPU time of the build's processes and the largest resident set of
one of them, and the size of the prepared node_modules. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.sandboxes.local import LocalSandboxFactory
from orchestrator.sandboxes.templates import SPECS, TemplateStore


def _size_mb(path: Path) -> float:
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0]) / 1024


def main(argv: list[str]) -> int:
    store = TemplateStore(Path(os.environ.get("SANDBOX_TEMPLATES", ".data/templates")))
    wanted = [name.upper() for name in argv] or store.ready()
    if len(wanted) > 1:  # one process each: the largest resident set is then the build's own
        for name in wanted:
            subprocess.run([sys.executable, "-m", "benchmarks.template_builds", name], check=True)
        return 0
    root = Path(tempfile.mkdtemp(prefix="template-builds-"))
    root.chmod(0o755)
    factory = LocalSandboxFactory(root, templates=store)
    print(f"isolation: {factory.isolation}; limits: {factory.limits}")
    print("framework  wall s  cpu s  max RSS MB  node_modules MB  output files  status")
    for name in wanted:
        spec = SPECS[name]
        template = store.require(name)
        sandbox = factory.create(f"bench-{spec.folder}", name)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = sandbox.run(spec.build_command, timeout=300)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        output = sandbox.build_output()
        sandbox.kill()
        print(
            f"{spec.folder:<10} {wall:6.1f} {cpu:6.1f} {after.ru_maxrss / 1024:11.0f} "
            f"{_size_mb(template.node_modules):16.0f} "
            f"{len(output.files) if output else 0:13d}  exit {result.exit_code}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

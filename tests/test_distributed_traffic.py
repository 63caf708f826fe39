"""A local Ray start by hitl.distributed.connect talks to loopback addresses only.

Runs a separate Python under ``strace -f`` (every process Ray spawns is traced) and
reads every ``connect``/``sendto`` address. Skipped without strace or Ray.
"""

import re
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

_SCRIPT = textwrap.dedent(
    """
    import time, ray
    from hitl import distributed
    info = distributed.connect(num_cpus=1)
    @ray.remote
    def f():
        return 1
    assert ray.get(f.remote()) == 1
    time.sleep(2)   # the dashboard's modules start in the background
    distributed.shutdown()
    print("ok")
    """
)

_ADDR = re.compile(r'inet_(?:addr|pton)\((?:AF_INET6?, )?"([^"]+)"')


def test_local_start_connects_to_loopback_only(tmp_path):
    pytest.importorskip("ray")
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    log = tmp_path / "trace.txt"
    out = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log), sys.executable, "-c", _SCRIPT],
        capture_output=True, text=True, timeout=240,
    )
    if "ptrace" in out.stderr and out.returncode != 0:
        pytest.skip("ptrace is not permitted here")
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
    addresses = set(_ADDR.findall(log.read_text()))
    assert addresses, "no network connect was traced at all"
    outside = {a for a in addresses if not (a.startswith("127.") or a in ("::1", "::ffff:127.0.0.1"))}
    assert not outside, f"connections to {sorted(outside)}"

"""A private Slurm from Debian's packages (munged, slurmctld, slurmd) on loopback ports, in a
folder of its own: one node, one partition, the site's `PrologSlurmctld`.

For the scheduler tests (deploy/scheduler/slurm): a real slurmctld runs the prolog before it
starts a job and requeues a batch job whose prolog fails. It needs root (slurmd starts jobs
as their user) and the packages `slurmctld slurmd slurm-client munge` (.ci/run installs them);
`NoSlurm` says what is missing, for the tests to skip with. Everything it starts is stopped
when the context ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ems.broker import free_port

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")


class NoSlurm(Exception):
    """Slurm cannot run here (a tool missing, not root, or a daemon that would not start)."""


@dataclass
class Slurm:
    dir: Path
    node: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.dir / "slurm.conf")}

    def _run(self, *args: str) -> str:
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=20, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def sbatch(self, *args: str) -> int:
        """Submit a batch job; its id. Its output goes to the private folder, not the caller's cwd."""
        out = f"--output={self.dir / 'log' / 'slurm-%j.out'}"
        return int(self._run("sbatch", "--parsable", out, *args).strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job` as fields (JobState, Restarts, Comment, ...)."""
        text = self._run("scontrol", "show", "job", str(job_id))
        return {m.group(1): m.group(2) for m in re.finditer(r"(\w+)=(\S*)", text)}

    def release(self, job_id: int) -> None:
        """Make a requeued job eligible now (Slurm holds one back for a while after a requeue)."""
        self._run("scontrol", "update", f"jobid={job_id}", "StartTime=now")


def _conf(d: Path, node: str, ctld_port: int, slurmd_port: int, prolog: Path) -> str:
    return f"""ClusterName=emstest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
ReturnToService=2
MpiDefault=none
PrologSlurmctld={prolog}
NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=1 RealMemory=500 State=UNKNOWN
PartitionName=gpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _up(slurm: Slurm, timeout_s: float) -> bool:
    """The node reports idle to the controller."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            if "idle" in slurm._run("sinfo", "-h", "-o", "%T").lower():
                return True
        time.sleep(0.3)
    return False


@contextlib.contextmanager
def private_slurm(d: Path, prolog: Path, node: str = "gpu01") -> Iterator[Slurm]:
    missing = [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        raise NoSlurm("Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge): "
                      + ", ".join(missing))
    if os.geteuid() != 0:
        raise NoSlurm("a private slurmd needs root")
    for sub in ("munge", "state", "spool", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "munge").chmod(0o700)
    key = d / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    (d / "slurm.conf").write_text(_conf(d, node, free_port(), free_port(), prolog), encoding="utf-8")
    slurm = Slurm(d, node)
    procs: list[subprocess.Popen[bytes]] = []
    logs = (d / "log" / "daemons.out").open("ab")
    try:
        procs.append(subprocess.Popen(
            ["munged", "-F", "-f", "-S", str(d / "munge" / "munge.socket"), f"--key-file={key}",
             f"--log-file={d / 'log' / 'munged.log'}", f"--pid-file={d / 'munge' / 'munged.pid'}",
             f"--seed-file={d / 'munge' / 'seed'}"], stdout=logs, stderr=logs))
        deadline = time.monotonic() + 10
        while not (d / "munge" / "munge.socket").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(d / "slurm.conf")], env=slurm.env,
                                      stdout=logs, stderr=logs))
        procs.append(subprocess.Popen(["slurmd", "-D", "-N", node, "-f", str(d / "slurm.conf")], env=slurm.env,
                                      stdout=logs, stderr=logs))
        if not _up(slurm, 30):
            tail = (d / "log" / "slurmctld.log").read_text(errors="replace")[-800:] if (
                d / "log" / "slurmctld.log").exists() else ""
            raise NoSlurm(f"the private Slurm did not come up: {tail}")
        yield slurm
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        logs.close()

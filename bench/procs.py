"""The processes a bench script starts (Envoys, backends, mock-api, load tools), kept in
one place so that every one of them is stopped, by its pid, when the script ends, is
interrupted or fails: `make bench` and `make soak` share it."""

import atexit
import os
import shutil
import signal
import subprocess
import threading


class Processes:
    """Every process this run starts, stopped (by pid) at exit, whatever happens."""

    def __init__(self):
        self.procs = []
        self.lock = threading.Lock()

    def spawn(self, args, cpu=None, **kw):
        """Starts `args` (pinned to the CPUs `cpu` names when taskset exists)."""
        if cpu is not None and shutil.which("taskset"):
            args = ["taskset", "-c", cpu] + list(args)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(args, **kw)
        with self.lock:
            self.procs.append(p)
        return p

    def stop(self, p, kill=False):
        if p.poll() is None:
            if kill:
                p.kill()
            else:
                p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with self.lock:
            if p in self.procs:
                self.procs.remove(p)

    def stop_all(self):
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            try:
                self.stop(p)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


PROCS = Processes()
atexit.register(PROCS.stop_all)


def _on_signal(signum, _frame):
    PROCS.stop_all()
    os._exit(128 + signum)


def stop_all_on_signals():
    """SIGTERM and SIGINT stop every process, then end the script (128 + the signal)."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

# -*- test-case-name: tests.test_pidfile -*-
"""
The pidfile Wazuh's own tools look for: C{var/run/wazuh-clusterd-<pid>.pid}
holding C{<pid>\\n} (mode 0640), as C{wazuh-clusterd} writes it.
C{cluster_control} and the Wazuh API's C{/cluster/status} say the cluster
is not running unless it names a live process.

It exists while the node serves: written once the node's services started
(after its sockets listen), removed when it stops; pidfiles of processes
that no longer exist are removed at start.  It is independent of twistd's
own C{--pidfile} (C{var/run/wazuh-clusterd.pid} by default), which twistd
uses to refuse a second start.
"""

import os
import re

from twisted.application.service import Service

from wazuhcluster.fsutil import atomicWrite
from wazuhcluster.logs import ClusterLogger

#: The process name in the pidfile's name.
PROCESS_NAME = "wazuh-clusterd"

_PIDFILE = re.compile(re.escape(PROCESS_NAME) + r"-(\d+)\.pid\Z")


def pidfileFor(home, pid):
    """
    The pidfile of process C{pid} of the node of C{home}.
    """
    return home.root.child("var").child("run").child(f"{PROCESS_NAME}-{pid}.pid")


def processExists(pid):
    """
    Whether a process C{pid} exists (one of another user counts).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WazuhPidfile(Service):
    """
    Keeps C{var/run/wazuh-clusterd-<pid>.pid} while running.

    @ivar path: the pidfile written, or L{None}.
    """

    name = "wazuh-pidfile"

    def __init__(self, home, getpid=os.getpid, exists=processExists, log=None):
        self.home = home
        self.getpid = getpid
        self.exists = exists
        self.path = None
        self.log = log if log is not None else ClusterLogger(
            "Cluster", "Main", namespace="wazuhcluster.pidfile")

    def startService(self):
        super().startService()
        pid = self.getpid()
        run = pidfileFor(self.home, pid).parent()
        if run.isdir():
            for child in run.children():
                match = _PIDFILE.match(child.basename())
                if match and int(match.group(1)) != pid and not self.exists(int(match.group(1))):
                    self._remove(child)
        path = pidfileFor(self.home, pid)
        try:
            run.makedirs(ignoreExistingDirectory=True)
            atomicWrite(path, f"{pid}\n".encode("ascii"), 0o640, durable=False)
        except OSError as error:
            self.log.error("Cannot write the pidfile {path}: {error}", path=path.path,
                           error=error.strerror or str(error))
            return
        self.path = path

    def stopService(self):
        super().stopService()
        path, self.path = self.path, None
        if path is not None:
            self._remove(path)

    def _remove(self, path):
        try:
            path.remove()
        except FileNotFoundError:
            pass
        except OSError as error:
            self.log.warn("Cannot remove the pidfile {path}: {error}", path=path.path,
                          error=error.strerror or str(error))

# -*- test-case-name: tests.test_pidfile -*-
"""
Tests for L{wazuhcluster.pidfile}: the C{var/run/wazuh-clusterd-<pid>.pid}
Wazuh's tools check.
"""

import os
import stat

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.home import NodeHome
from wazuhcluster.pidfile import WazuhPidfile, pidfileFor, processExists


class PidfileTests(SynchronousTestCase):
    """
    The pidfile exists while the service runs.
    """

    def setUp(self):
        self.home = NodeHome(FilePath(self.mktemp()))
        self.home.createLayout()

    def test_writtenAndRemoved(self):
        """
        At start the pidfile holds C{<pid>\\n} with mode 0640, named as
        Wazuh names it; at stop it is gone.
        """
        service = WazuhPidfile(self.home, getpid=lambda: 4242)
        service.startService()
        path = self.home.root.descendant(["var", "run", "wazuh-clusterd-4242.pid"])
        self.assertEqual(path.getContent(), b"4242\n")
        self.assertEqual(stat.S_IMODE(os.stat(path.path).st_mode), 0o640)
        service.stopService()
        self.assertFalse(path.exists())

    def test_staleRemoved(self):
        """
        Pidfiles of processes that no longer exist are removed at start;
        those of live ones, and other files, are kept.
        """
        run = pidfileFor(self.home, 1).parent()
        run.makedirs()
        for name in ("wazuh-clusterd-111.pid", "wazuh-clusterd-222.pid", "wazuh-db-111.pid",
                     "wazuh-clusterd.pid"):
            run.child(name).setContent(b"x\n")
        service = WazuhPidfile(self.home, getpid=lambda: 333, exists=lambda pid: pid == 222)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(sorted(run.listdir()), [
            "wazuh-clusterd-222.pid", "wazuh-clusterd-333.pid", "wazuh-clusterd.pid",
            "wazuh-db-111.pid"])

    def test_unwritable(self):
        """
        A pidfile that cannot be written is logged; the node still runs.
        """
        run = pidfileFor(self.home, 1).parent()
        run.makedirs()
        run.child("wazuh-clusterd-55.pid").makedirs()
        run.child("wazuh-clusterd-55.pid").child("x").setContent(b"")
        errors = []
        service = WazuhPidfile(self.home, getpid=lambda: 55)
        service.log.observer = errors.append
        service.startService()
        service.stopService()
        self.assertIn("Cannot write the pidfile", errors[0]["log_format"])

    def test_processExists(self):
        """
        This process exists; a PID above the kernel's maximum does not.
        """
        self.assertTrue(processExists(os.getpid()))
        self.assertFalse(processExists(2**22 + 1))

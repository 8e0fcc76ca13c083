# -*- test-case-name: tests.test_systemd -*-
"""
Tests for the systemd units in C{systemd/}: they parse, and start the
installed twistd plugins on the home they name.
"""

import configparser
import shlex

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

UNITS = FilePath(__file__).parent().sibling("systemd")


def readUnit(name):
    """
    Parse a unit file as systemd reads it: sections, C{Key=value} lines,
    C{#} comments, keys case-sensitive.
    """
    parser = configparser.ConfigParser(strict=True, interpolation=None,
                                       comment_prefixes=("#", ";"),
                                       delimiters=("=",), empty_lines_in_values=False)
    parser.optionxform = str
    parser.read_string(UNITS.child(name).getContent().decode("utf-8"), name)
    return parser


class UnitTests(SynchronousTestCase):
    """
    C{wazuh-cluster-master.service} and C{wazuh-cluster-worker.service}.
    """

    def test_unitsShipped(self):
        """
        Exactly the master and the worker units ship.
        """
        self.assertEqual(sorted(UNITS.listdir()),
                         ["wazuh-cluster-master.service", "wazuh-cluster-worker.service"])

    def test_sections(self):
        """
        Each unit has its three sections, is a simple service restarted on
        failure, waits for the network and is wanted by multi-user.target.
        """
        for kind in ("master", "worker"):
            unit = readUnit(f"wazuh-cluster-{kind}.service")
            self.assertEqual(unit.sections(), ["Unit", "Service", "Install"])
            self.assertIn(kind, unit["Unit"]["Description"])
            self.assertIn("network-online.target", unit["Unit"]["After"])
            self.assertEqual(unit["Service"]["Type"], "simple")
            self.assertEqual(unit["Service"]["Restart"], "on-failure")
            self.assertEqual(unit["Install"]["WantedBy"], "multi-user.target")

    def test_execStart(self):
        """
        C{ExecStart} runs twistd in the foreground with the installed plugin
        for the unit's node kind, on the home set in C{Environment}.
        """
        tapnames = {plugin.tapname for plugin in getPlugins(IServiceMaker)}
        for kind in ("master", "worker"):
            service = readUnit(f"wazuh-cluster-{kind}.service")["Service"]
            name, _, home = service["Environment"].partition("=")
            self.assertEqual(name, "WAZUH_HOME")
            self.assertTrue(home.startswith("/"), home)
            argv = shlex.split(service["ExecStart"])
            self.assertTrue(argv[0].startswith("/") and argv[0].endswith("/twistd"), argv)
            self.assertIn("-n", argv[1:argv.index(f"wazuh-{kind}")])
            self.assertIn(f"wazuh-{kind}", tapnames)
            self.assertEqual(argv[argv.index(f"wazuh-{kind}") + 1:],
                             ["--home", "${WAZUH_HOME}"])

    def test_hardeningLetsItWriteItsHome(self):
        """
        The unit is hardened (no new privileges, read-only system, no
        capabilities) and may still write the home it runs.
        """
        for kind in ("master", "worker"):
            service = readUnit(f"wazuh-cluster-{kind}.service")["Service"]
            home = service["Environment"].partition("=")[2]
            self.assertEqual(service["NoNewPrivileges"], "yes")
            self.assertEqual(service["ProtectSystem"], "strict")
            self.assertIn(home, service["ReadWritePaths"].split())
            self.assertEqual(service["CapabilityBoundingSet"], "")
            self.assertIn("AF_INET", service["RestrictAddressFamilies"].split())
            self.assertIn("AF_UNIX", service["RestrictAddressFamilies"].split())
            self.assertNotEqual(service["User"], "root")

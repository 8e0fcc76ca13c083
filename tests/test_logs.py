# -*- test-case-name: tests.test_logs -*-
"""
Tests for cluster.log: the original's line format, levels, filtering and
daily rotation into the original's layout.
"""

import gzip
import os
import time

from twisted.logger import LogLevel, LogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.logs import (
    ClusterLogger,
    ClusterLogService,
    WazuhDailyLogFile,
    formatClusterEvent,
    levelPredicate,
)


def event(text, level=LogLevel.info, **keys):
    values = {"log_format": text, "log_level": level, "log_time": 1764064800.0,
              "log_namespace": "wazuhcluster.test"}
    values.update(keys)
    return values


class FormatTests(SynchronousTestCase):
    """
    L{formatClusterEvent}.
    """

    def test_lineLayout(self):
        """
        A tagged event becomes C{YYYY/MM/DD HH:MM:SS LEVEL: [tag] [subtag]
        text} in local time.
        """
        line = formatClusterEvent(event("Finished in {elapsed:.3f}s.", elapsed=0.0123,
                                        cluster_tag="Worker node02",
                                        cluster_subtag="Integrity sync"))
        when = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(1764064800.0))
        self.assertEqual(line, f"{when} INFO: [Worker node02] [Integrity sync] Finished in 0.012s.\n")

    def test_levels(self):
        """
        Levels print as the original's names (warn -> WARNING).
        """
        for level, name in [(LogLevel.debug, "DEBUG"), (LogLevel.warn, "WARNING"),
                            (LogLevel.error, "ERROR"), (LogLevel.critical, "CRITICAL")]:
            self.assertIn(f" {name}: ", formatClusterEvent(event("x", level)))

    def test_defaultTags(self):
        """
        Events without tags (Twisted's own) get C{[Cluster] [Main]}.
        """
        self.assertIn("INFO: [Cluster] [Main] hello", formatClusterEvent(event("hello")))

    def test_emptyEventSkipped(self):
        """
        Events without text are not written.
        """
        self.assertIsNone(formatClusterEvent({"log_level": LogLevel.info, "log_time": 0}))

    def test_loggerTags(self):
        """
        L{ClusterLogger} adds its tag, sub-tag and node; derived loggers keep
        the node.
        """
        events = []
        log = ClusterLogger("Master", "Main", observer=events.append, node="master")
        log.withSubtag("Keep alive").error("No keep alives")
        self.assertEqual((events[0]["cluster_tag"], events[0]["cluster_subtag"],
                          events[0]["cluster_node"]), ("Master", "Keep alive", "master"))


class FilterTests(SynchronousTestCase):
    """
    What reaches cluster.log.
    """

    def test_debugOnlyWithDebug(self):
        """
        Debug lines are written only with C{--debug}; Twisted's connection
        chatter only as debug.
        """
        from twisted.logger import PredicateResult

        normal, debug = levelPredicate(False), levelPredicate(True)
        self.assertEqual(normal(event("x", LogLevel.debug)), PredicateResult.no)
        self.assertEqual(debug(event("x", LogLevel.debug)), PredicateResult.maybe)
        amp = event("x", LogLevel.info, log_namespace="twisted.protocols.amp")
        self.assertEqual(normal(amp), PredicateResult.no)
        ampError = event("x", LogLevel.error, log_namespace="twisted.protocols.amp")
        self.assertEqual(normal(ampError), PredicateResult.maybe)
        retry = event("Scheduling retry", LogLevel.info,
                      log_namespace="twisted.application._client_service._Core")
        self.assertEqual(normal(retry), PredicateResult.no)

    def test_serviceWritesOnlyItsNode(self):
        """
        The log service writes its node's events and untagged ones, and stops
        writing when stopped.
        """
        path = FilePath(self.mktemp()).child("logs").child("cluster.log")
        publisher = LogPublisher()
        service = ClusterLogService(path, publisher=publisher, node="worker1")
        service.startService()
        ClusterLogger("Worker worker1", observer=publisher, node="worker1").info("mine")
        ClusterLogger("Worker worker2", observer=publisher, node="worker2").info("other")
        publisher(event("twisted"))
        service.stopService()
        ClusterLogger("Worker worker1", observer=publisher, node="worker1").info("late")
        text = path.getContent().decode()
        self.assertIn("[Worker worker1] [Main] mine", text)
        self.assertIn("twisted", text)
        self.assertNotIn("other", text)
        self.assertNotIn("late", text)
        self.assertEqual(os.stat(path.path).st_mode & 0o777, 0o660)


class RotationTests(SynchronousTestCase):
    """
    Daily rotation into C{logs/cluster/<YYYY>/<Mon>/cluster.log-<DD>.gz}.
    """

    def test_rotateIntoWazuhLayout(self):
        """
        Rotating moves yesterday's log, gzipped (0640), into the original's
        layout and starts an empty cluster.log.
        """
        logs = FilePath(self.mktemp())
        logs.makedirs()
        logfile = WazuhDailyLogFile("cluster.log", logs.path)
        logfile.write("2026/11/24 23:59:59 INFO: [Master] [Main] yesterday\n")
        logfile.lastDate = (2026, 11, 24)
        logfile.rotate()
        logfile.write("today\n")
        logfile.close()
        rotated = logs.descendant(["cluster", "2026", "Nov", "cluster.log-24.gz"])
        with gzip.open(rotated.path) as archive:
            self.assertIn(b"yesterday", archive.read())
        self.assertEqual(os.stat(rotated.path).st_mode & 0o777, 0o640)
        self.assertEqual(logs.child("cluster.log").getContent(), b"today\n")

# -*- test-case-name: tests.test_logs -*-
"""
Tests for cluster.log: the original's line format, levels, filtering and
daily rotation into the original's layout.
"""

import datetime
import gzip
import json
import os
import threading
import time

from twisted.internet.defer import inlineCallbacks
from twisted.logger import LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wazuhcluster.logs import (
    ClusterLogger,
    ClusterLogService,
    WazuhDailyLogFile,
    formatClusterEvent,
    jsonEventFormatter,
    levelPredicate,
    logFormats,
    threadRunner,
)
from wazuhcluster.ossecconf import parseOssecConf


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


class InjectionTests(SynchronousTestCase):
    """
    A peer's string can never start a line of cluster.log.
    """

    FORGED = "evil\n2026/11/25 10:00:00 ERROR: [Master] [Main] forged\r\x1b[2K\u2028x"

    def test_messageEscaped(self):
        """
        Control characters in a message (newline, carriage return, escape,
        Unicode line separator) are escaped: the event is one line.
        """
        line = formatClusterEvent(event("Hello from {peer}.", peer=self.FORGED))
        self.assertEqual(line.count("\n"), 1)
        self.assertTrue(line.endswith("\n"))
        self.assertIn("evil\\n2026/11/25 10:00:00 ERROR: [Master] [Main] forged\\r\\x1b[2K"
                      "\\u2028x.", line)

    def test_tagsEscaped(self):
        """
        Tags are escaped too.
        """
        line = formatClusterEvent(event("x", cluster_tag="Worker a\nb"))
        self.assertIn("[Worker a\\nb]", line)
        self.assertEqual(line.count("\n"), 1)

    def test_tracebackIndented(self):
        """
        A failure's traceback stays readable on continuation lines, each
        indented with a tab, so that even an exception message holding a
        newline cannot start a line of its own.
        """
        try:
            raise ValueError(self.FORGED)
        except ValueError:
            failure = Failure()
        line = formatClusterEvent(event("Round failed: {peer}", LogLevel.error,
                                        peer="p\nq", log_failure=failure))
        first, *rest = line.rstrip("\n").split("\n")
        self.assertTrue(first.endswith("ERROR: [Cluster] [Main] Round failed: p\\nq"))
        self.assertTrue(rest)
        self.assertTrue(all(continuation.startswith("\t") for continuation in rest), rest)
        self.assertIn("\tTraceback (most recent call last):", line)
        self.assertIn("ValueError: evil", line)

    def test_fileHoldsOneLinePerEvent(self):
        """
        Through the log service, a forged line in a message leaves the file
        with one line per event.
        """
        path = FilePath(self.mktemp()).child("cluster.log")
        publisher = LogPublisher()
        service = ClusterLogService(path, publisher=publisher)
        service.startService()
        log = ClusterLogger("Worker w1", "Main", observer=publisher)
        log.info("Connection from {peer}", peer=self.FORGED)
        log.info("next")
        service.stopService()
        lines = path.getContent().decode().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertFalse(any(line.startswith("2026/11/25 10:00:00 ERROR") for line in lines))


class JsonLogTests(SynchronousTestCase):
    """
    C{logs/cluster.json}: one JSON object a line.
    """

    def test_record(self):
        """
        A record has the ISO 8601 timestamp, level, tag, subtag, node and
        the message (with its newlines kept as JSON escapes).
        """
        formatter = jsonEventFormatter("master")
        line = formatter(event("Finished in {elapsed:.3f}s.\nsecond", LogLevel.warn,
                               elapsed=0.5, cluster_tag="Worker node02",
                               cluster_subtag="Integrity sync", cluster_node="node02"))
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(
            {k: record[k] for k in ("level", "tag", "subtag", "node", "message")},
            {"level": "WARNING", "tag": "Worker node02", "subtag": "Integrity sync",
             "node": "node02", "message": "Finished in 0.500s.\nsecond"})
        when = datetime.datetime.fromisoformat(record["timestamp"])
        self.assertEqual(when.timestamp(), 1764064800.0)
        self.assertIsNotNone(when.tzinfo)
        self.assertEqual(json.loads(formatter(event("twisted")))["node"], "master")

    def test_serviceWritesBoth(self):
        """
        With a JSON path, the service writes each event to cluster.log and
        as a record to cluster.json (0660).
        """
        logs = FilePath(self.mktemp())
        publisher = LogPublisher()
        service = ClusterLogService(logs.child("cluster.log"), publisher=publisher,
                                    jsonPath=logs.child("cluster.json"), nodeName="master")
        service.startService()
        ClusterLogger("Master", "Keep alive", observer=publisher).error("No keep {x}", x=1)
        service.stopService()
        self.assertIn("ERROR: [Master] [Keep alive] No keep 1",
                      logs.child("cluster.log").getContent().decode())
        [record] = [json.loads(line) for line in
                    logs.child("cluster.json").getContent().decode().splitlines()]
        self.assertEqual((record["level"], record["subtag"], record["message"], record["node"]),
                         ("ERROR", "Keep alive", "No keep 1", "master"))
        self.assertEqual(os.stat(logs.child("cluster.json").path).st_mode & 0o777, 0o660)

    def test_logFormats(self):
        """
        C{<logging><log_format>} reads as Wazuh's C{plain}, C{json} or both;
        plain when absent; anything else is refused.
        """
        def formats(xml):
            return logFormats(parseOssecConf(xml.encode()))

        logging = "<ossec_config><logging><log_format>{}</log_format></logging></ossec_config>"
        self.assertEqual(formats("<ossec_config/>"), {"plain"})
        self.assertEqual(formats(logging.format("json")), {"json"})
        self.assertEqual(formats(logging.format("plain, json")), {"plain", "json"})
        self.assertEqual(formats("<ossec_config><cluster/></ossec_config>"
                                 + logging.format("json,plain")), {"plain", "json"})
        self.assertRaises(ValueError, formats, logging.format("xml"))
        self.assertRaises(ValueError, formats, logging.format(""))


class _DatedLogFile(WazuhDailyLogFile):
    """
    A log file whose dates are the injected C{today}.
    """

    today = (2026, 11, 24)

    def toDate(self, *args):
        return self.today


class DatedRotationTests(SynchronousTestCase):
    """
    Rotation when the date changes, with an injected date.
    """

    def test_rotateOnNewDay(self):
        """
        The first write of a new day moves the previous day's file, gzipped,
        to C{cluster/<YYYY>/<Mon>/<name>-<DD>.gz}: for cluster.json as for
        cluster.log; a second rotation of the same day is appended.
        """
        logs = FilePath(self.mktemp())
        logs.makedirs()
        for name in ("cluster.log", "cluster.json"):
            logfile = _DatedLogFile(name, logs.path)
            logfile.write("monday\n")
            logfile.today = (2026, 11, 25)
            logfile.write("tuesday\n")
            logfile.close()
            rotated = logs.descendant(["cluster", "2026", "Nov", f"{name}-24.gz"])
            with gzip.open(rotated.path) as archive:
                self.assertEqual(archive.read(), b"monday\n")
            self.assertEqual(logs.child(name).getContent(), b"tuesday\n")
        again = _DatedLogFile("cluster.log", logs.path)
        again.today = (2026, 11, 24)
        again.lastDate = (2026, 11, 24)
        again.write("late\n")
        again.today = (2026, 11, 25)
        again.write("x\n")
        again.close()
        rotated = logs.descendant(["cluster", "2026", "Nov", "cluster.log-24.gz"])
        with gzip.open(rotated.path) as archive:
            self.assertEqual(archive.read(), b"monday\ntuesday\nlate\n")


class ThreadedRotationTests(TestCase):
    """
    The compression of a rotated log runs in a thread, never on the
    reactor's.
    """

    @inlineCallbacks
    def test_compressInThread(self):
        """
        With a real thread pool, C{rotate} renames and reopens at once and
        the gzip runs in another thread; once done, the archive holds the
        old log and the temporary file is gone.
        """
        from twisted.internet import reactor

        logs = FilePath(self.mktemp())
        logs.makedirs()
        threads = []
        runner = threadRunner(reactor)

        def runInThread(function, *args):
            def recorded():
                threads.append(threading.get_ident())
                return function(*args)

            return runner(recorded)

        logfile = _DatedLogFile("cluster.log", logs.path, runInThread=runInThread)
        logfile.write("old line\n" * 1000)
        logfile.today = (2026, 11, 25)
        logfile.write("new line\n")
        self.assertEqual(logs.child("cluster.log").getContent(), b"new line\n")
        yield logfile.compressionsDone()
        logfile.close()
        self.assertEqual(len(threads), 1)
        self.assertNotEqual(threads[0], threading.get_ident())
        month = logs.descendant(["cluster", "2026", "Nov"])
        self.assertEqual(month.listdir(), ["cluster.log-24.gz"])
        with gzip.open(month.child("cluster.log-24.gz").path) as archive:
            self.assertEqual(archive.read(), b"old line\n" * 1000)
        self.assertEqual(os.stat(month.child("cluster.log-24.gz").path).st_mode & 0o777,
                         0o640)

    @inlineCallbacks
    def test_serviceWaitsForCompression(self):
        """
        Stopping the log service waits for the compressions it started.
        """
        logs = FilePath(self.mktemp())
        publisher = LogPublisher()
        service = ClusterLogService(logs.child("cluster.log"), publisher=publisher)
        service.startService()
        [logfile] = service._files
        logfile.lastDate = (2000, 1, 1)
        ClusterLogger(observer=publisher).info("after midnight")
        yield service.stopService()
        month = logs.descendant(["cluster", "2000", "Jan"])
        self.assertEqual(month.listdir(), ["cluster.log-01.gz"])

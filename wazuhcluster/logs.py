# -*- test-case-name: tests.test_logs -*-
"""
C{logs/cluster.log} in the original's format (WAZUH.md section 6)::

    2026/11/25 10:00:00 INFO: [Worker node02] [Integrity sync] Finished in 0.012s.

Code emits structured events through a L{ClusterLogger}, which adds the
C{cluster_tag} (C{Master}, C{Worker node02}, C{Local Server}, C{Cluster}) and
C{cluster_subtag} (C{Main}, C{Keep alive}, C{Integrity sync}...) keys; the
observer does the layout.  Twisted's own events get the default tags.
"""

import gzip
import os
import shutil
import time

from twisted.application.service import Service
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    eventAsText,
    formatTime,
    globalLogPublisher,
)
from twisted.python.logfile import DailyLogFile
from zope.interface import implementer

TIME_FORMAT = "%Y/%m/%d %H:%M:%S"
DEFAULT_TAG = "Cluster"
DEFAULT_SUBTAG = "Main"

_LEVEL_NAMES = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARNING",
    LogLevel.error: "ERROR",
    LogLevel.critical: "CRITICAL",
}

#: Namespaces whose info-level chatter is debug-level for an operator
#: (C{log_legacy}: Twisted's old-style messages such as "Factory starting
#: on ..."; their errors still pass).
_QUIET_NAMESPACES = (
    "log_legacy",
    "twisted.protocols.amp",
    "twisted.protocols.tls",
    "twisted.internet.protocol",
    "twisted.application.internet",
    "twisted.application._client_service",
)


class ClusterLogger(Logger):
    """
    A L{Logger} whose events carry a cluster tag and sub-tag.

    Make one per component instance (not as a class attribute: L{Logger}'s
    descriptor protocol would rebuild it and lose the tags).
    """

    def __init__(self, tag=DEFAULT_TAG, subtag=DEFAULT_SUBTAG, namespace=None,
                 source=None, observer=None, node=None):
        super().__init__(namespace=namespace, source=source, observer=observer)
        self.tag = tag
        self.subtag = subtag
        self.node = node

    def withSubtag(self, subtag):
        """
        A logger with the same tag (and node) and another sub-tag.
        """
        return ClusterLogger(self.tag, subtag, namespace=self.namespace,
                             source=self.source, observer=self.observer, node=self.node)

    def withTag(self, tag):
        """
        A logger with another tag and the same sub-tag (and node).
        """
        return ClusterLogger(tag, self.subtag, namespace=self.namespace,
                             source=self.source, observer=self.observer, node=self.node)

    def emit(self, level, format=None, **kwargs):
        kwargs.setdefault("cluster_tag", self.tag)
        kwargs.setdefault("cluster_subtag", self.subtag)
        if self.node is not None:
            kwargs.setdefault("cluster_node", self.node)
        super().emit(level, format, **kwargs)


def formatClusterEvent(event):
    """
    Format one event as a cluster.log line (with a trailing newline), or
    return L{None} for events without text.
    """
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    if not text:
        return None
    level = event.get("log_level", LogLevel.info)
    levelName = _LEVEL_NAMES.get(level, level.name.upper())
    tag = event.get("cluster_tag", DEFAULT_TAG)
    subtag = event.get("cluster_subtag", DEFAULT_SUBTAG)
    when = formatTime(event.get("log_time", time.time()), TIME_FORMAT)
    return f"{when} {levelName}: [{tag}] [{subtag}] {text}\n"


def levelPredicate(debug=False):
    """
    The filter of cluster.log: info and up (debug and up with C{debug}),
    with Twisted's connection chatter demoted to debug.
    """
    predicate = LogLevelFilterPredicate(
        defaultLogLevel=LogLevel.debug if debug else LogLevel.info
    )
    if not debug:
        for namespace in _QUIET_NAMESPACES:
            predicate.setLogLevelForNamespace(namespace, LogLevel.warn)
    return predicate


@implementer(ILogFilterPredicate)
class nodePredicate:
    """
    Keep events of one node (and events of no node).
    """

    def __init__(self, node):
        self.node = node

    def __call__(self, event):
        if event.get("cluster_node", self.node) == self.node:
            return PredicateResult.maybe
        return PredicateResult.no


class WazuhDailyLogFile(DailyLogFile):
    """
    A log file rotated on the first write after midnight into the original's
    layout: C{logs/cluster/<YYYY>/<Mon>/cluster.log-<DD>.gz} (0640).
    """

    def rotatedPath(self, date):
        """
        Where the log of C{date} (a C{(year, month, day)} tuple) is kept.
        """
        year, month, day = date
        monthName = time.strftime("%b", (year, month, day, 0, 0, 0, 0, 1, -1))
        stem = os.path.splitext(os.path.basename(self.path))[0]
        return os.path.join(
            self.directory, stem, f"{year:04d}", monthName,
            f"{os.path.basename(self.path)}-{day:02d}.gz",
        )

    def rotate(self):
        if not (os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)):
            return
        target = self.rotatedPath(self.lastDate)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._file.close()
        pending = target[: -len(".gz")] + ".tmp"
        os.replace(self.path, pending)
        self._openFile()
        os.chmod(self.path, 0o660)
        with open(pending, "rb") as source, gzip.open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
        os.chmod(target, 0o640)
        os.remove(pending)


class ClusterLogService(Service):
    """
    Writes every log event to C{logs/cluster.log} while running.

    @ivar path: the L{FilePath} of the log file.
    @ivar debug: also write debug events.
    @ivar node: when several nodes share a process (the demo), only events of
        this node (and events of no node, such as Twisted's) are written.
    """

    name = "cluster-log"

    def __init__(self, path, debug=False, publisher=globalLogPublisher, node=None):
        self.path = path
        self.debug = debug
        self.node = node
        self._publisher = publisher
        self._file = None
        self._observer = None

    def startService(self):
        self.path.parent().makedirs(ignoreExistingDirectory=True)
        self._file = WazuhDailyLogFile.fromFullPath(self.path.path)
        os.chmod(self.path.path, 0o660)
        predicates = [levelPredicate(self.debug)]
        if self.node is not None:
            predicates.append(nodePredicate(self.node))
        self._observer = FilteringLogObserver(
            FileLogObserver(self._file, formatClusterEvent), predicates)
        self._publisher.addObserver(self._observer)
        super().startService()

    def stopService(self):
        super().stopService()
        if self._observer is not None:
            self._publisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None

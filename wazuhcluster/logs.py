# -*- test-case-name: tests.test_logs -*-
"""
C{logs/cluster.log} in the original's format (WAZUH.md section 6)::

    2026/11/25 10:00:00 INFO: [Worker node02] [Integrity sync] Finished in 0.012s.

Code emits structured events through a L{ClusterLogger}, which adds the
C{cluster_tag} (C{Master}, C{Worker node02}, C{Local Server}, C{Cluster}) and
C{cluster_subtag} (C{Main}, C{Keep alive}, C{Integrity sync}...) keys; the
observer does the layout.  Twisted's own events get the default tags.

A message is one line whatever it holds: control characters (a peer's
C{\\n<forged line>}) are escaped; the traceback of a failure follows on
continuation lines, each indented with a tab.

When ossec.conf's C{<logging><log_format>} includes C{json} (Wazuh's
convention for ossec.log / ossec.json), the node also writes
C{logs/cluster.json}: one JSON object a line with C{timestamp} (ISO 8601),
C{level}, C{tag}, C{subtag}, C{node} and C{message}.

Both files rotate on the first write after midnight into
C{logs/cluster/<YYYY>/<Mon>/cluster.log-<DD>.gz} (and C{cluster.json-<DD>.gz});
the rename happens at once, the compression in a thread.
"""

import datetime
import gzip
import json
import os
import re
import shutil
import time

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
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


#: Characters that could end or rewrite a line: C0 controls, DEL, C1
#: controls and Unicode's line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escapeOne(match):
    character = match.group()
    if character in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escapeControl(text):
    """
    C{text} with every control character written as an escape (C{\\n},
    C{\\x1b}, C{\\u2028}...), so that it stays on one line.
    """
    return _CONTROL.sub(_escapeOne, text)


def _traceback(event):
    """
    The traceback of the event's failure, or L{None}.
    """
    failure = event.get("log_failure")
    if failure is None:
        return None
    try:
        return failure.getTraceback()
    except Exception:
        return "(unable to obtain the traceback)"


def _levelName(event):
    level = event.get("log_level", LogLevel.info)
    return _LEVEL_NAMES.get(level, level.name.upper())


_log = ClusterLogger(namespace="wazuhcluster.logs")


def formatClusterEvent(event):
    """
    Format one event as a cluster.log line (with a trailing newline), or
    return L{None} for events without text.

    The message is one line (control characters escaped); a failure's
    traceback follows, every line of it indented with a tab.
    """
    message = formatEvent(event)
    traceback = _traceback(event)
    if not message and traceback is None:
        return None
    text = escapeControl(message)
    if traceback is not None:
        text += "".join("\n\t" + escapeControl(line)
                        for line in traceback.rstrip("\n").split("\n"))
    tag = escapeControl(str(event.get("cluster_tag", DEFAULT_TAG)))
    subtag = escapeControl(str(event.get("cluster_subtag", DEFAULT_SUBTAG)))
    when = formatTime(event.get("log_time", time.time()), TIME_FORMAT)
    return f"{when} {_levelName(event)}: [{tag}] [{subtag}] {text}\n"


def isoTimestamp(when):
    """
    An epoch time as ISO 8601 in local time with its offset, to the
    millisecond (C{2026-11-25T10:00:00.000+01:00}).
    """
    moment = datetime.datetime.fromtimestamp(when).astimezone()
    return moment.isoformat(timespec="milliseconds")


def jsonEventFormatter(node=None):
    """
    A formatter of events as C{cluster.json} lines: one JSON object a line
    with C{timestamp}, C{level}, C{tag}, C{subtag}, C{node} and C{message}
    (a failure's traceback included in the message).

    @param node: the node name for events that carry none (Twisted's own).
    """

    def formatJsonEvent(event):
        message = formatEvent(event)
        traceback = _traceback(event)
        if not message and traceback is None:
            return None
        if traceback is not None:
            message = f"{message}\n{traceback}" if message else traceback
        record = {
            "timestamp": isoTimestamp(event.get("log_time", time.time())),
            "level": _levelName(event),
            "tag": str(event.get("cluster_tag", DEFAULT_TAG)),
            "subtag": str(event.get("cluster_subtag", DEFAULT_SUBTAG)),
            "node": event.get("cluster_node", node),
            "message": message,
        }
        return json.dumps(record) + "\n"

    return formatJsonEvent


#: The values of Wazuh's C{<logging><log_format>}.
LOG_FORMATS = ("plain", "json")


def logFormats(root):
    """
    The log formats an ossec.conf asks for in C{<logging><log_format>}
    (C{plain}, C{json} or C{plain,json}; C{plain} when absent).

    @param root: the parsed ossec.conf
        (L{wazuhcluster.ossecconf.parseOssecConf}).
    @rtype: L{frozenset} of L{str}
    @raise ValueError: naming an unknown value.
    """
    values = [
        (element.text or "").strip()
        for section in root.findall("ossec_config")
        for logging in section.findall("logging")
        for element in logging.findall("log_format")
    ]
    if not values:
        return frozenset({"plain"})
    formats = {part.strip() for part in values[-1].split(",")}
    unknown = sorted(formats - set(LOG_FORMATS))
    if unknown or not formats:
        raise ValueError(
            f"Invalid value for element 'log_format': {values[-1]!r}. Valid values "
            "are plain, json and plain,json")
    return frozenset(formats)


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


def compressRotated(pending, target):
    """
    Gzip the renamed log C{pending} onto C{target} (0640; appended as one
    more gzip member when the day was rotated already) and remove
    C{pending}.  Blocking: run it in a thread.
    """
    with open(pending, "rb") as source, gzip.open(target, "ab") as sink:
        shutil.copyfileobj(source, sink)
    os.chmod(target, 0o640)
    os.remove(pending)


class WazuhDailyLogFile(DailyLogFile):
    """
    A log file rotated on the first write after midnight into the original's
    layout: C{logs/cluster/<YYYY>/<Mon>/cluster.log-<DD>.gz} (0640).

    The rotation renames the file and opens a new one at once; the
    compression runs through C{runInThread}, one at a time.

    @ivar runInThread: called with a function and its arguments, returns a
        Deferred of its result (run in a thread); L{None} compresses at once
        (for use without a reactor).
    """

    def __init__(self, name, directory, defaultMode=None, runInThread=None):
        self.runInThread = runInThread
        self._compressions = succeed(None)
        self._rotations = 0
        super().__init__(name, directory, defaultMode)

    def compressionsDone(self):
        """
        @return: a Deferred firing once every compression started so far has
            finished.
        """
        waiter = Deferred()

        def done(result):
            waiter.callback(None)
            return result

        self._compressions.addBoth(done)
        return waiter

    def __getstate__(self):
        state = DailyLogFile.__getstate__(self)
        for key in ("runInThread", "_compressions"):
            state.pop(key, None)
        return state

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
        """
        Rename the current log aside, open a new one, and compress the old
        one into the original's layout (in a thread when C{runInThread} is
        set).
        """
        if not (os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)):
            return
        target = self.rotatedPath(self.lastDate)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._file.close()
        self._rotations += 1
        pending = f"{target[: -len('.gz')]}.{os.getpid()}-{self._rotations}.tmp"
        os.replace(self.path, pending)
        self._openFile()
        os.chmod(self.path, 0o660)
        if self.runInThread is None:
            compressRotated(pending, target)
            return

        def compress(ignored):
            return self.runInThread(compressRotated, pending, target)

        def failed(failure):
            _log.failure("Could not compress the rotated log {pending} into {target}",
                         failure, level=LogLevel.error, pending=pending, target=target)

        self._compressions = self._compressions.addCallback(compress).addErrback(failed)


def threadRunner(reactor):
    """
    A C{runInThread} for L{WazuhDailyLogFile} on C{reactor}'s thread pool.
    """
    from twisted.internet.threads import deferToThreadPool

    def runInThread(function, *args):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return runInThread


class ClusterLogService(Service):
    """
    Writes every log event to C{logs/cluster.log} (and to C{logs/cluster.json}
    when asked) while running.

    @ivar path: the L{FilePath} of the log file.
    @ivar jsonPath: the L{FilePath} of the JSON log, or L{None} for none.
    @ivar debug: also write debug events.
    @ivar node: when several nodes share a process (the demo), only events of
        this node (and events of no node, such as Twisted's) are written.
    @ivar nodeName: the C{node} of JSON records for events that name none
        (C{node} by default).
    """

    name = "cluster-log"

    def __init__(self, path, debug=False, publisher=globalLogPublisher, node=None,
                 jsonPath=None, nodeName=None, reactor=None):
        self.path = path
        self.jsonPath = jsonPath
        self.debug = debug
        self.node = node
        self.nodeName = nodeName if nodeName is not None else node
        self._publisher = publisher
        self._reactor = reactor
        self._files = []
        self._observers = []

    def _open(self, path):
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        path.parent().makedirs(ignoreExistingDirectory=True)
        logFile = WazuhDailyLogFile.fromFullPath(
            path.path, runInThread=threadRunner(self._reactor))
        os.chmod(path.path, 0o660)
        self._files.append(logFile)
        return logFile

    def _predicates(self):
        predicates = [levelPredicate(self.debug)]
        if self.node is not None:
            predicates.append(nodePredicate(self.node))
        return predicates

    def startService(self):
        outputs = [(self.path, formatClusterEvent)]
        if self.jsonPath is not None:
            outputs.append((self.jsonPath, jsonEventFormatter(self.nodeName)))
        for path, formatter in outputs:
            observer = FilteringLogObserver(
                FileLogObserver(self._open(path), formatter), self._predicates())
            self._observers.append(observer)
            self._publisher.addObserver(observer)
        super().startService()

    def stopService(self):
        """
        Stop writing; the Deferred returned fires once the rotated logs
        being compressed are done.
        """
        super().stopService()
        for observer in self._observers:
            self._publisher.removeObserver(observer)
        self._observers = []
        pending = [logFile.compressionsDone() for logFile in self._files]
        for logFile in self._files:
            logFile.close()
        self._files = []
        return gatherResults(pending)

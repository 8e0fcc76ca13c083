# -*- test-case-name: tests.test_wazuhdb_store -*-
"""
What a worker read from wazuh-db and the master has not acknowledged yet.

wazuh-db marks an agent synced as soon as its row is read (WAZUH.md 4.5:
the original loses the row when the push to the master then fails). The
store therefore keeps every row it read here, each with a version, until
L{PendingAgentInfo.acknowledge} names that version; and it keeps them on
disk, so a restart between the read and the acknowledgement loses nothing.

The file (C{queue/cluster/agent-info-pending.jsonl}) is JSON lines: a
header C{{"format": 1, "version": N}}, then one row per line. It is
replaced atomically (L{wazuhcluster.fsutil.atomicWrite}) in a thread,
encoded row by row (never one long C call holding the interpreter);
writes are serialised and coalesced. A read returns only once the rows it
added are on disk.
"""

import json
import os

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from wazuhcluster.errors import ClusterError
from wazuhcluster.fsutil import atomicWrite

FORMAT = 1

#: The file's mode.
MODE = 0o640


def _encode(version, rows, incomplete=()):
    header = {"format": FORMAT, "version": version, "incomplete": sorted(incomplete)}
    lines = [json.dumps(header).encode("utf-8")]
    lines.extend(json.dumps(row, separators=(",", ":")).encode("utf-8") for row in rows)
    return b"\n".join(lines) + b"\n"


def writeRows(path, version, rows, incomplete=()):
    """
    Replace the file at C{path} (blocking: run it in a thread).
    """
    os.makedirs(os.path.dirname(path.path), exist_ok=True)
    atomicWrite(path, _encode(version, rows, incomplete), MODE)


def readRows(path):
    """
    Read the file at C{path} (blocking: run it in a thread).

    @return: C{(version, rows, incomplete)}; C{(0, [], [])} when there is
        no file.
    @raise ValueError: the file is not what L{writeRows} writes.
    """
    try:
        with open(path.path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0, [], []
    if not lines:
        return 0, [], []
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("unknown format")
    version = header.get("version")
    incomplete = header.get("incomplete", [])
    if type(version) is not int:
        raise ValueError("invalid version")
    if not isinstance(incomplete, list) or not all(type(n) is int for n in incomplete):
        raise ValueError("invalid incomplete list")
    rows = [json.loads(line) for line in lines[1:] if line.strip()]
    for row in rows:
        if not isinstance(row, dict) or type(row.get("sync_version")) is not int:
            raise ValueError("invalid row")
    return version, rows, incomplete


class PendingAgentInfo:
    """
    The rows read and not acknowledged, by agent number.

    @ivar version: the last version handed out.
    @ivar incomplete: numbers of agents read as marked whose full rows
        have not been read yet.
    """

    def __init__(self, path, runInThread, log):
        """
        @type path: L{twisted.python.filepath.FilePath}
        @param runInThread: C{runInThread(f, *args)} returning a Deferred.
        """
        self._path = path
        self._run = runInThread
        self._log = log
        self._rows = {}
        self.version = 0
        self.incomplete = set()
        self._writing = None
        self._dirty = False
        self._unsaved = False
        self._waiters = []

    def load(self):
        """
        Read the file. A file that cannot be read is set aside
        (C{.corrupt}) and logged: starting empty beats not starting.

        @return: a Deferred firing with the number of rows loaded.
        """
        d = self._run(readRows, self._path)

        def loaded(result):
            self.version, rows, incomplete = result
            self._rows = {int(row["id"]): row for row in rows}
            self.incomplete = set(incomplete)
            return len(self._rows)

        def failed(failure):
            self._log.error("Unreadable {path} ({error}); set aside.",
                            path=self._path.path, error=failure.getErrorMessage())
            return self._run(os.replace, self._path.path, self._path.path + ".corrupt").addBoth(
                lambda _: 0)

        return d.addCallbacks(loaded, failed)

    def __len__(self):
        return len(self._rows)

    def merge(self, rows):
        """
        Keep C{rows} (agent-info rows without versions), each replacing the
        one of its agent; a row that differs from the kept one takes a new
        version.

        @return: a Deferred firing once the rows are on disk.
        """
        changed = False
        for row in rows:
            number = int(row["id"])
            if number in self.incomplete:
                self.incomplete.discard(number)
                changed = True
            old = self._rows.get(number)
            if old is not None and {k: v for k, v in old.items() if k != "sync_version"} == row:
                continue
            self.version += 1
            self._rows[number] = dict(row, sync_version=self.version)
            changed = True
        if not changed and not self._unsaved:
            return succeed(None)
        return self._requestWrite()

    def markIncomplete(self, numbers):
        """
        Remember (on disk) that these agents were read as marked and their
        rows are still to be read.

        @return: a Deferred firing once on disk.
        """
        new = set(numbers) - self.incomplete
        if not new and not self._unsaved:
            return succeed(None)
        self.incomplete |= new
        return self._requestWrite()

    def completed(self, numbers):
        """
        These agents need no reading any more (gone from wazuh-db).
        """
        if self.incomplete & set(numbers):
            self.incomplete -= set(numbers)
            self._requestWrite().addErrback(self._writeFailed)

    def page(self, limit, after):
        """
        The kept rows of agents numbered above C{after}, by number, at most
        C{limit} (all when L{None}).
        """
        numbers = sorted(n for n in self._rows if n > after)
        if limit is not None:
            numbers = numbers[:limit]
        return [dict(self._rows[n]) for n in numbers]

    def acknowledge(self, pairs):
        """
        Forget the rows whose version is the one named (a row read again
        meanwhile stays). The file is rewritten in the background: losing
        an acknowledgement only sends a row again.

        @param pairs: C{(id, sync_version)}.
        @return: the number of rows forgotten.
        """
        forgotten = 0
        for agentId, version in pairs:
            number = int(agentId)
            row = self._rows.get(number)
            if row is not None and row["sync_version"] == version:
                del self._rows[number]
                forgotten += 1
        if forgotten:
            self._requestWrite().addErrback(self._writeFailed)
        return forgotten

    def _writeFailed(self, failure):
        self._log.error("Could not write {path}: {error}", path=self._path.path,
                        error=failure.getErrorMessage())

    def _requestWrite(self):
        waiter = Deferred()
        self._waiters.append(waiter)
        if self._writing is None:
            self._startWrite()
        else:
            self._dirty = True
        return waiter

    def _startWrite(self):
        waiters, self._waiters = self._waiters, []
        self._dirty = False
        rows = [self._rows[n] for n in sorted(self._rows)]
        self._writing = self._run(writeRows, self._path, self.version, rows,
                                  sorted(self.incomplete))

        def done(result):
            self._writing = None
            # Until a write succeeds, rows kept in memory only are retried.
            self._unsaved = isinstance(result, Failure)
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(ClusterError(
                        f"Could not write {self._path.path}: {result.getErrorMessage()}", 1000))
                else:
                    waiter.callback(None)
            if self._dirty or self._waiters:
                self._startWrite()

        self._writing.addBoth(done)

    def flush(self):
        """
        @return: a Deferred firing once every requested write ended.
        """
        if self._writing is None and not self._waiters:
            return succeed(None)
        return self._requestWrite().addErrback(lambda _: None)


class PendingGroups:
    """
    Assignments received for agents wazuh-db does not know yet (a worker
    gets the master's assignment before client.keys brings the agent),
    kept in C{queue/cluster/agent-groups-pending.json} until they can be
    applied.
    """

    def __init__(self, path, runInThread, log):
        self._path = path
        self._run = runInThread
        self._log = log
        self.assignments = {}

    def load(self):
        def read(path):
            try:
                with open(path.path, "rb") as f:
                    value = json.load(f)
            except FileNotFoundError:
                return {}
            if not isinstance(value, dict):
                raise ValueError("not an object")
            return {int(k): [str(g) for g in v] for k, v in value.items()}

        def failed(failure):
            self._log.error("Unreadable {path} ({error}); ignored.",
                            path=self._path.path, error=failure.getErrorMessage())
            return {}

        d = self._run(read, self._path).addErrback(failed)
        return d.addCallback(lambda value: setattr(self, "assignments", value))

    def save(self):
        """
        @return: a Deferred firing once written.
        """
        data = json.dumps({str(n): g for n, g in sorted(self.assignments.items())}).encode()

        def write(path):
            os.makedirs(os.path.dirname(path.path), exist_ok=True)
            atomicWrite(path, data, MODE)

        return self._run(write, self._path)

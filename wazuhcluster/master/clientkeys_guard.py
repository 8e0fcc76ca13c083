# -*- test-case-name: tests.test_clientkeys_guard,tests.test_faults_clientkeys -*-
"""
The client.keys guard (Wazuh #3389: a master rebuilt with an empty
client.keys wiped every worker's, and every agent was lost).

The master announces to its workers the snapshot of its synced files
through this guard (L{ClientKeysGuard}), which stands between its local
integrity and the integrity sessions.  The guard keeps a copy of the last
C{etc/client.keys} it announced, C{queue/cluster/client.keys.synced} (it
survives restarts), and refuses to announce a C{client.keys} that lost
more than C{intervals.master.max_client_keys_loss} (a ratio, 0.5 by
default) of the agents of that copy, or that is empty or gone while the
copy has agents.  While it refuses:

  - the workers are told the last announced file is still the master's:
    they keep theirs, and a worker that lacks it receives that copy;
  - every other synced file is announced as usual;
  - it logs an ERROR every C{master.recalculate_integrity} seconds saying
    how many agents would be lost and how to accept the change.

The operator accepts the file as it is with C{wazuh-cluster agent
accept-keys --home H} (L{acceptClientKeys}): it records the MD5 of the
current C{etc/client.keys} in C{queue/cluster/client.keys.accept}; the
guard announces that file at its next round (and a later, different file
is judged again).  A file that gains agents, or loses fewer, is announced
at once and becomes the new copy.

A master with no copy yet (a new cluster, or a home rebuilt without its
C{queue/cluster/}) announces its first non-empty file and keeps it; an
empty file with no copy is announced, having nothing to protect.
"""

import hashlib
import os

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from twisted.python.filepath import FilePath

from wazuhcluster.clientkeys import CLIENT_KEYS_MODE, parseClientKeys
from wazuhcluster.errors import ClusterError
from wazuhcluster.fsutil import atomicWrite
from wazuhcluster.integrity import FileMeta

#: The guarded file, relative to the home.
CLIENT_KEYS = "etc/client.keys"

#: The copy of the last client.keys announced, relative to the home.
SYNCED_COPY = "queue/cluster/client.keys.synced"

#: The operator's acceptance (the MD5 of the accepted file).
ACCEPT_FLAG = "queue/cluster/client.keys.accept"

#: The item of the guarded file.
_ITEM = "etc/"


@frozen
class Verdict:
    """
    What the guard decided about the current client.keys.

    @ivar held: whether it is held back.
    @ivar meta: when held, the L{FileMeta} of the copy announced instead.
    @ivar before: the agents of the copy (L{None} when there was none).
    @ivar after: the agents of the current file.
    @ivar lost: the agents of the copy missing from the current file.
    @ivar accepted: the operator accepted this file.
    """

    held: bool
    meta: object = None
    before: object = None
    after: int = 0
    lost: int = 0
    accepted: bool = False


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _agents(content):
    entries, _ = parseClientKeys(content or b"")
    return {entry.id for entry in entries if int(entry.id) > 0}


def _md5(content):
    return hashlib.md5(content).hexdigest()


def judge(root, maxLoss):
    """
    Decide about C{root/etc/client.keys} against the copy of the last one
    announced, and update the copy when it is announced.  Blocking (runs
    in a thread).

    @param root: the master's home (a path).
    @param maxLoss: the largest share of agents a change may lose.
    @rtype: L{Verdict}
    """
    current = _read(os.path.join(root, CLIENT_KEYS))
    copyPath = os.path.join(root, SYNCED_COPY)
    copy = _read(copyPath)
    after = _agents(current)
    if copy is None:
        if after:
            _keep(root, current)
        return Verdict(False, before=None, after=len(after))
    if current is not None and _md5(current) == _md5(copy):
        return Verdict(False, before=len(after), after=len(after))
    before = _agents(copy)
    lost = len(before - after)
    accepted = False
    if before and (not after or lost / len(before) > maxLoss):
        flag = _read(os.path.join(root, ACCEPT_FLAG))
        wanted = _md5(current) if current is not None else "missing"
        accepted = flag is not None and flag.decode("ascii", "replace").strip() == wanted
        if not accepted:
            stat = os.stat(copyPath)
            meta = FileMeta(_md5(copy), stat.st_mtime, len(copy), _ITEM)
            return Verdict(True, meta, len(before), len(after), lost)
    _keep(root, current)
    _forgetAcceptance(root)
    return Verdict(False, before=len(before), after=len(after), lost=lost, accepted=accepted)


def _keep(root, content):
    """
    Make C{content} the copy of the last client.keys announced (none when
    the file is gone).
    """
    path = os.path.join(root, SYNCED_COPY)
    if content is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    target = FilePath(path)
    target.parent().makedirs(ignoreExistingDirectory=True)
    atomicWrite(target, content, CLIENT_KEYS_MODE)


def _forgetAcceptance(root):
    try:
        os.unlink(os.path.join(root, ACCEPT_FLAG))
    except FileNotFoundError:
        pass


def acceptClientKeys(home):
    """
    C{wazuh-cluster agent accept-keys}: accept the master's current
    C{etc/client.keys} as it is, even though it lost many agents.

    @param home: the master's L{wazuhcluster.home.NodeHome}.
    @return: C{(accepted, before, after)}: whether there was something to
        accept, and the agents of the last announced copy and of the file.
    @raise ClusterError: the acceptance cannot be written.
    """
    root = home.root.path
    current = _read(os.path.join(root, CLIENT_KEYS))
    copy = _read(os.path.join(root, SYNCED_COPY))
    before = None if copy is None else len(_agents(copy))
    after = len(_agents(current))
    if copy is None or (current is not None and _md5(current) == _md5(copy)):
        return False, before, after
    wanted = _md5(current) if current is not None else "missing"
    flag = home.root.preauthChild(ACCEPT_FLAG)
    try:
        flag.parent().makedirs(ignoreExistingDirectory=True)
        atomicWrite(flag, wanted.encode("ascii") + b"\n", 0o640)
    except OSError as e:
        raise ClusterError(f"Cannot write {flag.path}: {e.strerror}", 1006) from e
    return True, before, after


def runAcceptKeys(home, out):
    """
    C{wazuh-cluster agent accept-keys --home H}: accept the master's
    current client.keys, and say what the master will do.

    @raise ClusterError: C{home} is not a master's, or the acceptance
        cannot be written.
    """
    from wazuhcluster.ossecconf import readClusterConfig

    config = readClusterConfig(home)
    if config.node_type != "master":
        raise ClusterError(f"accept-keys runs on the master's home: {home.root.path} is the "
                           f"home of worker {config.node_name}", 1006)
    accepted, before, after = acceptClientKeys(home)
    if not accepted:
        out.write("etc/client.keys is the one the master announced last: nothing to "
                  "accept.\n")
        return 0
    out.write(f"Accepted etc/client.keys ({after} agents; the last one announced had "
              f"{before}): the master announces it at its next integrity round, and the "
              "workers replace theirs.\n")
    return 0


class ClientKeysGuard(Service):
    """
    What the master announces: its local integrity's snapshot, with
    C{etc/client.keys} held back while a change would lose too many agents
    (see the module docstring).

    It offers what L{wazuhcluster.master.integrity_sync.MasterIntegrity}
    uses of a local integrity: C{snapshot}, C{whenReady()},
    C{subscribe(callback)} and C{trigger()}, and the files to read instead
    of the home's while one is held (L{substitutes}).

    @ivar snapshot: the snapshot announced, or L{None} before the first.
    @ivar verdict: the last L{Verdict}.
    """

    name = "client-keys-guard"

    def __init__(self, local, root, maxLoss, interval, log, clock, runInThread):
        """
        @param local: the master's L{wazuhcluster.local_integrity.LocalIntegrity}.
        @param root: the master's home (L{FilePath}).
        @param maxLoss: C{intervals.master.max_client_keys_loss}.
        @param interval: seconds between two judgements while held, each
            logging an ERROR (C{master.recalculate_integrity}).
        """
        self.local = local
        self.root = root
        self.maxLoss = maxLoss
        self.interval = interval
        self.log = log
        self.clock = clock
        self.runInThread = runInThread
        self.snapshot = None
        self.verdict = None
        self._subscribers = []
        self._ready = []
        self._pending = None
        self._changes = {}
        self._dirty = False
        self._judging = None
        self._loop = None
        local.subscribe(self._localChanged)

    # -- what MasterIntegrity uses --------------------------------------------------

    def whenReady(self):
        if self.snapshot is not None:
            return succeed(self.snapshot)
        d = Deferred()
        self._ready.append(d)
        return d

    def subscribe(self, callback):
        """
        Call C{callback(snapshot, changes)} on every change of what is
        announced.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def trigger(self):
        self.local.trigger()

    @property
    def held(self):
        return self.verdict is not None and self.verdict.held

    def substitutes(self, snapshot):
        """
        The files to read instead of the home's when serving C{snapshot}:
        the copy of the last announced client.keys while the snapshot holds
        it back.

        @return: a dict of relpath to the path to read, relative to the
            home.
        """
        announced = snapshot.files.get(CLIENT_KEYS)
        local = self.local.snapshot.files.get(CLIENT_KEYS) if self.local.snapshot else None
        if announced is not None and (local is None or local.md5 != announced.md5):
            return {CLIENT_KEYS: SYNCED_COPY}
        return {}

    # -- service ---------------------------------------------------------------------

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._judging is not None:
            follower = Deferred()
            self._judging.addBoth(lambda result: (follower.callback(None), result)[1])
            return follower
        return succeed(None)

    # -- judging ---------------------------------------------------------------------

    def _localChanged(self, snapshot, changes):
        self._pending = snapshot
        self._changes.update(changes)
        if CLIENT_KEYS in changes:
            self._dirty = True
        if self._judging is not None:
            return
        if self.verdict is not None and not self._dirty:
            self._publish(self.verdict)
            return
        self._judge()

    def _judge(self):
        """
        Judge the current client.keys in a thread (one judgement at a time).
        """
        self._dirty = False
        d = maybeDeferred(self.runInThread, judge, self.root.path, self.maxLoss)
        self._judging = d
        d.addCallbacks(self._judged, self._failed)
        d.addBoth(self._judgingDone)

    def _judgingDone(self, ignored):
        self._judging = None
        if self._dirty and self.running:
            self._judge()
        elif self._pending is not None:
            self._publish(self.verdict)
        return None

    def _failed(self, failure):
        self.log.failure("Could not check etc/client.keys before announcing it", failure,
                         level=LogLevel.error)
        if self.verdict is None:
            self.verdict = Verdict(False)

    def _judged(self, verdict):
        previous, self.verdict = self.verdict, verdict
        if verdict.held:
            self._logHeld(verdict)
            self._startLoop()
        else:
            self._stopLoop()
            if previous is not None and previous.held:
                self.log.warn("Announcing etc/client.keys with {after} agents (the last one "
                              "announced had {before}){why}.", after=verdict.after,
                              before=verdict.before,
                              why=": accepted by the operator" if verdict.accepted else "")

    def _logHeld(self, verdict):
        self.log.error(
            "etc/client.keys lost {lost} of the {before} agents of the last one announced "
            "({after} left): not announcing it, the workers keep theirs. If the change is "
            "wanted, run 'wazuh-cluster agent accept-keys --home {home}'.",
            lost=verdict.lost, before=verdict.before, after=verdict.after,
            home=self.root.path)

    def _startLoop(self):
        if self._loop is None and self.running:
            self._loop = LoopingCall(self._recheck)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def _stopLoop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _recheck(self):
        """
        While held: judge again (an acceptance, a restored file), logging
        the ERROR again if it still holds.
        """
        if self.local.snapshot is None:
            return
        self._dirty = True
        if self._judging is None:
            self._pending = self.local.snapshot
            self._judge()

    def _publish(self, verdict):
        """
        Announce the latest local snapshot, with C{client.keys} held back
        if C{verdict} says so; tell the subscribers if what is announced
        changed.
        """
        local, self._pending = self._pending, None
        changes, self._changes = self._changes, {}
        announced = local
        if verdict is not None and verdict.held:
            announced = local.withChanges({CLIENT_KEYS: verdict.meta})
        previous, self.snapshot = self.snapshot, announced
        waiters, self._ready = self._ready, []
        for d in waiters:
            d.callback(announced)
        if previous is not None and previous.digest == announced.digest:
            return
        changes = {path: meta for path, meta in changes.items() if path != CLIENT_KEYS}
        old = None if previous is None else previous.files.get(CLIENT_KEYS)
        new = announced.files.get(CLIENT_KEYS)
        if previous is None or old != new:
            changes[CLIENT_KEYS] = new
        for callback in list(self._subscribers):
            try:
                callback(announced, changes)
            except Exception:
                self.log.failure("Error in an integrity subscriber", level=LogLevel.error)

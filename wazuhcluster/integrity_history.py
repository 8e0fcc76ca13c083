# -*- test-case-name: tests.test_integrity_history -*-
"""
The master's bounded history of its snapshot changes (DESIGN.md,
"Integrity"): a worker that holds digest X receives only the changes from X
to the master's current digest, and the whole manifest only when X is
unknown or too old.

Each change of the master's snapshot is one transition C{before -> after}
with the files that changed.  The history keeps the latest transitions, at
most L{MAX_TRANSITIONS} and L{MAX_CHANGED_FILES} changed files in all; the
delta from a digest is composed once per pair of digests and its encoded
chunks kept, since every worker in sync asks for the same one.
"""

from attrs import frozen

from wazuhcluster.manifest import encodeManifest

#: Transitions kept.
MAX_TRANSITIONS = 256

#: Changed files kept over all the transitions.
MAX_CHANGED_FILES = 100_000


@frozen
class Transition:
    """
    One change of the master's snapshot.

    @ivar before: the digest before.
    @ivar after: the digest after.
    @ivar changes: path to C{(md5, size)}, or L{None} for a file removed.
    """

    before: str
    after: str
    changes: dict


@frozen
class Answer:
    """
    What a worker holding some digest receives.

    @ivar full: the chunks are the whole manifest (the worker's digest was
        unknown), else a delta.
    @ivar chunks: the encoded chunks (at least one, possibly empty).
    @ivar entries: the number of records in them.
    """

    full: bool
    chunks: tuple
    entries: int


class IntegrityHistory:
    """
    The latest transitions of the master's snapshot, and the answers made
    from them.
    """

    def __init__(self, maxTransitions=MAX_TRANSITIONS, maxChangedFiles=MAX_CHANGED_FILES):
        self.maxTransitions = maxTransitions
        self.maxChangedFiles = maxChangedFiles
        self.current = None
        self._transitions = []
        self._changedFiles = 0
        self._answers = {}

    def record(self, snapshot, changes):
        """
        The snapshot changed to C{snapshot} through C{changes} (path to
        L{wazuhcluster.integrity.FileMeta} or L{None}).
        """
        previous = self.current
        self.current = snapshot
        self._answers = {}
        if previous is None or previous.digest == snapshot.digest:
            return
        entries = {path: None if meta is None else (meta.md5, meta.size)
                   for path, meta in changes.items()}
        self._transitions.append(Transition(previous.digest, snapshot.digest, entries))
        self._changedFiles += len(entries)
        while self._transitions and (len(self._transitions) > self.maxTransitions
                                     or self._changedFiles > self.maxChangedFiles):
            dropped = self._transitions.pop(0)
            self._changedFiles -= len(dropped.changes)

    def knows(self, digest):
        """
        Whether a delta from C{digest} can be made.
        """
        return any(t.before == digest for t in self._transitions)

    def deltaFrom(self, digest):
        """
        The changes from C{digest} to the current digest, or L{None} when
        C{digest} is not in the history.

        @return: a dict of path to C{(md5, size)} or L{None}.
        """
        for index, transition in enumerate(self._transitions):
            if transition.before == digest:
                delta = {}
                for later in self._transitions[index:]:
                    delta.update(later.changes)
                return delta
        return None

    def deltaAnswer(self, digest):
        """
        The L{Answer} for a worker holding C{digest} (the current snapshot
        differs from it): the delta from C{digest}, encoded, when it is known
        and smaller than the manifest; L{None} when the worker needs the whole
        manifest.
        """
        if digest in self._answers:
            return self._answers[digest]
        delta = self.deltaFrom(digest)
        answer = None
        if delta is not None and len(delta) < len(self.current.files):
            chunks = encodeManifest(delta)
            answer = Answer(False, tuple(chunks) or (b"",), len(delta))
        if len(self._answers) >= 64:
            self._answers.pop(next(iter(self._answers)))
        self._answers[digest] = answer
        return answer

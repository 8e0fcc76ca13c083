# -*- test-case-name: tests.test_integrity -*-
"""
Manifests and deltas on the wire, and what a worker must do to match the
master.

Peers exchange them as records (L{wazuhcluster.chunks}): C{path TAB md5 TAB
size} for a file, C{path TAB -} for a file removed (in a delta).  Every entry
a peer sends is validated (paths by L{wazuhcluster.pathrules}).
L{compareManifests} and L{compareDelta} say what a worker must create,
update and delete: the master always wins.

Everything here is pure and blocking on big manifests: callers run it in a
thread.
"""

import re

from attrs import frozen

from wazuhcluster.chunks import MAX_CHUNK, RecordError, RecordReader, packRecords
from wazuhcluster.errors import ClusterError
from wazuhcluster.integrity import Snapshot
from wazuhcluster.pathrules import (
    MAX_PATH_BYTES,
    UnsafePath,
    checkSyncedPath,
    segmentProblem,
)

_MD5 = re.compile(r"[0-9a-f]{32}\Z")
_SIZE = re.compile(r"(0|[1-9][0-9]{0,17})\Z")


class MalformedManifest(ClusterError):
    """
    A manifest received from a peer cannot be decoded.
    """

    code = 3032

    def __init__(self, detail):
        super().__init__(f"Malformed integrity manifest: {detail}")
        self.detail = detail


def manifestRecord(path, entry):
    """
    The record of one file (C{(md5, size)}), or of a removed file (L{None}).
    """
    if entry is None:
        return f"{path}\t-".encode("utf-8")
    md5, size = entry
    return f"{path}\t{md5}\t{size}".encode("utf-8")


def manifestRecords(manifest):
    """
    The records of a manifest or a delta, in path order.

    @param manifest: a L{Snapshot}, or a mapping of path to C{(md5, size)}
        (or L{None} for a removed file, in a delta).
    """
    if isinstance(manifest, Snapshot):
        manifest = manifest.manifest()
    return (manifestRecord(path, manifest[path]) for path in sorted(manifest))


def encodeManifest(manifest, limit=MAX_CHUNK):
    """
    Serialise a manifest (or a delta) for the wire: its records packed into
    chunks (L{wazuhcluster.chunks.packRecords}).

    @return: a list of L{bytes} chunks; none for an empty manifest.
    """
    return [chunk for _, chunk in packRecords(manifestRecords(manifest), limit)]


class ManifestDecoder:
    """
    Decode manifest or delta chunks as they arrive, validating each entry.

    @ivar entries: the decoded mapping of path to C{(md5, size)} (or L{None}
        for a removed file, when deletions are allowed) so far.
    """

    def __init__(self, fileset=None, maxEntries=None, deletions=False):
        """
        @param fileset: if given, every path must be accepted by
            L{checkSyncedPath} for this file set.
        @param maxEntries: if given, refuse more entries.
        @param deletions: accept C{path TAB -} records (a delta).
        """
        self._fileset = fileset
        self._deletions = deletions
        self._reader = RecordReader(maxRecordLength=MAX_PATH_BYTES + 64,
                                    maxRecords=maxEntries)
        self.entries = {}

    def feed(self, chunk):
        """
        Decode one chunk.

        @raise MalformedManifest: if the chunk or one of its entries is
            malformed, or a bound is broken.
        """
        try:
            records = self._reader.feed(chunk)
        except RecordError as e:
            raise MalformedManifest(str(e)) from None
        for record in records:
            try:
                line = record.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedManifest("an entry is not UTF-8") from None
            self._addLine(line)

    def finish(self):
        """
        The manifest ended.

        @return: the entries.
        @raise MalformedManifest: it ended inside an entry.
        """
        try:
            self._reader.finish()
        except RecordError as e:
            raise MalformedManifest(str(e)) from None
        return self.entries

    def _addLine(self, line):
        fields = line.split("\t")
        if self._deletions and len(fields) == 2 and fields[1] == "-":
            path, entry = fields[0], None
        else:
            if len(fields) != 3:
                raise MalformedManifest(f"entry {line[:100]!r} has not 3 fields")
            path, md5, size = fields
            if not _MD5.match(md5):
                raise MalformedManifest(f"bad MD5 {md5[:40]!r} for {path[:100]!r}")
            if not _SIZE.match(size):
                raise MalformedManifest(f"bad size {size[:40]!r} for {path[:100]!r}")
            entry = (md5, int(size))
        if path in self.entries:
            raise MalformedManifest(f"duplicate entry {path[:100]!r}")
        self._checkPath(path)
        self.entries[path] = entry

    def _checkPath(self, path):
        if self._fileset is not None:
            try:
                checkSyncedPath(self._fileset, path)
            except UnsafePath as e:
                raise MalformedManifest(e.message) from None
        elif not path or path.startswith("/") or any(
            segmentProblem(segment) for segment in path.split("/")
        ):
            raise MalformedManifest(f"bad path {path[:100]!r}")


def decodeManifest(chunks, fileset=None, deletions=False):
    """
    Decode the chunks made by L{encodeManifest}.

    @param chunks: an iterable of L{bytes}.
    @param fileset: if given, also check every path with L{checkSyncedPath}.
    @param deletions: accept removed-file records (a delta).
    @return: a L{dict} of path to C{(md5, size)} (or L{None}).
    @raise MalformedManifest: on any malformed chunk or entry.
    """
    decoder = ManifestDecoder(fileset, deletions=deletions)
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.finish()


@frozen
class Comparison:
    """
    What a worker must do to match the master.

    @ivar missing: sorted paths the master has and the worker lacks (create).
    @ivar shared: sorted paths both have with different contents (update).
    @ivar extra: sorted paths only the worker has (delete).
    """

    missing: tuple
    shared: tuple
    extra: tuple

    @property
    def inSync(self):
        """
        Whether the worker already matches the master.
        """
        return not (self.missing or self.shared or self.extra)


def compareManifests(master, worker):
    """
    Compare two manifests; the master always wins.

    Files differ when their MD5 (or size) differ; modification times are not
    considered.

    @param master: the master's mapping of path to C{(md5, size)}.
    @param worker: the worker's mapping of path to C{(md5, size)}.
    @rtype: L{Comparison}
    """
    missing = sorted(path for path in master if path not in worker)
    extra = sorted(path for path in worker if path not in master)
    shared = sorted(
        path
        for path, entry in master.items()
        if path in worker and tuple(worker[path]) != tuple(entry)
    )
    return Comparison(tuple(missing), tuple(shared), tuple(extra))


def compareDelta(delta, worker):
    """
    What a worker holding the master's earlier state must do to reach the
    master's current one, from the changes in between: O(changes).

    @param delta: path to C{(md5, size)}, or L{None} for a file the master
        removed.
    @param worker: the worker's mapping of path to C{(md5, size)}.
    @rtype: L{Comparison}
    """
    missing, shared, extra = [], [], []
    for path in sorted(delta):
        entry = delta[path]
        mine = worker.get(path)
        if entry is None:
            if mine is not None:
                extra.append(path)
        elif mine is None:
            missing.append(path)
        elif tuple(mine) != tuple(entry):
            shared.append(path)
    return Comparison(tuple(missing), tuple(shared), tuple(extra))

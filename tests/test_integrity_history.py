# -*- test-case-name: tests.test_integrity_history -*-
"""
Tests for L{wazuhcluster.integrity_history}.
"""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.integrity import FileMeta, Snapshot
from wazuhcluster.integrity_history import IntegrityHistory
from wazuhcluster.manifest import decodeManifest


def meta(data):
    return FileMeta(hashlib.md5(data).hexdigest(), 0, len(data), "etc/rules/")


class HistoryTests(SynchronousTestCase):
    """
    Deltas from any digest of the history, bounded.
    """

    def setUp(self):
        self.history = IntegrityHistory(maxTransitions=3, maxChangedFiles=100)
        self.snapshots = [Snapshot({f"etc/rules/{i}.xml": meta(b"%d" % i) for i in range(10)})]
        self.history.record(self.snapshots[0], dict(self.snapshots[0].files))

    def change(self, changes):
        snapshot = self.snapshots[-1].withChanges(changes)
        self.history.record(snapshot, changes)
        self.snapshots.append(snapshot)
        return snapshot

    def test_composedDelta(self):
        """
        From an older digest, the delta merges every later change (the newest
        wins); it decodes to what the worker must reach.
        """
        first = self.snapshots[0]
        self.change({"etc/rules/1.xml": meta(b"v1")})
        self.change({"etc/rules/1.xml": meta(b"v2"), "etc/rules/2.xml": None})
        answer = self.history.deltaAnswer(first.digest)
        self.assertFalse(answer.full)
        self.assertEqual(answer.entries, 2)
        delta = decodeManifest(answer.chunks, deletions=True)
        self.assertEqual(delta, {"etc/rules/1.xml": (meta(b"v2").md5, 2),
                                 "etc/rules/2.xml": None})
        self.assertIs(self.history.deltaAnswer(first.digest), answer)

    def test_unknownDigest(self):
        """
        A digest the history never saw, or one pushed out by the bound, gets
        no delta (the whole manifest then).
        """
        self.assertIsNone(self.history.deltaAnswer("0" * 64))
        first = self.snapshots[0].digest
        for n in range(4):
            self.change({"etc/rules/1.xml": meta(b"round %d" % n)})
        self.assertFalse(self.history.knows(first))
        self.assertIsNone(self.history.deltaAnswer(first))
        self.assertTrue(self.history.knows(self.snapshots[-2].digest))

    def test_changedFilesBound(self):
        """
        Transitions are dropped once they hold too many changed files.
        """
        big = {f"etc/rules/new{i}.xml": meta(b"n") for i in range(150)}
        self.change(big)
        self.assertFalse(self.history.knows(self.snapshots[0].digest))

    def test_deltaLargerThanManifest(self):
        """
        When the changes are as many as the files, the manifest is sent
        instead.
        """
        first = self.snapshots[0].digest
        self.change({f"etc/rules/{i}.xml": meta(b"x%d" % i) for i in range(10)})
        self.assertIsNone(self.history.deltaAnswer(first))

# -*- test-case-name: tests.test_integrity -*-
"""
Tests for L{wazuhcluster.integrity}.
"""

import hashlib
import operator
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_pathrules import FILESET, validPaths
from wazuhcluster.chunks import MAX_CHUNK
from wazuhcluster.clusteritems import FileItem, FileSet
from wazuhcluster.integrity import FileMeta, Snapshot, hashFile, scanFiles
from wazuhcluster.manifest import (
    MalformedManifest,
    ManifestDecoder,
    compareManifests,
    decodeManifest,
    encodeManifest,
)

SYNCED = {
    "etc/client.keys": b"001 agent any key\n",
    "etc/shared/ar.conf.bak": b"not excluded by name",
    "etc/shared/default/agent.conf": b"<agent_config/>\n",
    "etc/shared/default/merged.mg": b"#default\n",
    "etc/shared/default/sca/custom.yml": b"policy: {}\n",
    "etc/rules/local_rules.xml": b"<group/>\n",
    "etc/decoders/local_decoder.xml": b"<decoder/>\n",
    "etc/lists/audit-keys": b"key:value\n",
    "etc/lists/deep/er/list": b"a:b\n",
    "var/multigroups/ab12/merged.mg": b"#multi\n",
}

NOT_SYNCED = {
    "etc/ossec.conf": b"<ossec_config/>",
    "etc/internal_options.conf": b"x",
    "etc/sub/client.keys": b"x",
    "etc/shared/ar.conf": b"x",
    "etc/shared/default/ossec.conf": b"x",
    "etc/shared/default/agent.conf~": b"x",
    "etc/shared/default/.agent.conf.tmp": b"x",
    "etc/rules/local_rules.xml.swp": b"x",
    "etc/lists/db.lock": b"x",
    "var/multigroups/ab12/agent.conf": b"x",
    "var/multigroups/merged.mg.old": b"x",
    "var/db/global.db": b"x",
    "queue/cluster/master/0000001.part": b"x",
}


def md5(data):
    return hashlib.md5(data).hexdigest()


def makeHome(testCase, files):
    """
    Create a home holding C{files} (path to bytes).
    """
    root = FilePath(testCase.mktemp())
    root.makedirs()
    for relpath, content in files.items():
        child = root.preauthChild(relpath)
        child.parent().makedirs(ignoreExistingDirectory=True)
        child.setContent(content)
    return root


def ageFiles(root, seconds=3600):
    """
    Set every file's mtime C{seconds} in the past (outside the racy window).
    """
    for path in root.walk():
        if path.isfile() and not path.islink():
            old = os.stat(path.path).st_mtime - seconds
            os.utime(path.path, (old, old))


class ScanFilesTests(SynchronousTestCase):
    """
    Tests for L{scanFiles}.
    """

    def test_findsExactlySyncedFiles(self):
        """
        The snapshot holds exactly the synced files with their MD5, size and
        item: client.keys only at the top of etc/, merged.mg only under
        var/multigroups, excluded names and extensions skipped.
        """
        root = makeHome(self, {**SYNCED, **NOT_SYNCED})
        result = scanFiles(root, FILESET)
        self.assertEqual(sorted(result.snapshot.files), sorted(SYNCED))
        for path, content in SYNCED.items():
            meta = result.snapshot.files[path]
            self.assertEqual((meta.md5, meta.size), (md5(content), len(content)))
            self.assertTrue(path.startswith(meta.item))
        self.assertEqual(result.snapshot.files["etc/client.keys"].item, "etc/")
        self.assertEqual(result.rehashed, len(SYNCED))
        self.assertEqual((result.skippedSymlinks, result.errors), ((), ()))

    def test_missingItemDirectories(self):
        """
        A home without any item directory gives an empty snapshot, no error.
        """
        root = FilePath(self.mktemp())
        root.makedirs()
        result = scanFiles(root, FILESET)
        self.assertEqual(result.snapshot, Snapshot.empty())
        self.assertEqual(result.errors, ())

    def test_symlinksSkippedAndReported(self):
        """
        Symlinked files and directories are neither followed nor included,
        and are reported; symlinks that could never be synced are not.
        """
        root = makeHome(self, SYNCED)
        outside = makeHome(self, {"secret/agent.conf": b"secret"})
        shared = root.descendant(["etc", "shared"])
        os.symlink(outside.child("secret").path, shared.child("evil").path)
        os.symlink(
            outside.descendant(["secret", "agent.conf"]).path,
            shared.descendant(["default", "linked.conf"]).path,
        )
        os.symlink(outside.path, root.descendant(["etc", "unrelated"]).path)
        result = scanFiles(root, FILESET)
        self.assertEqual(sorted(result.snapshot.files), sorted(SYNCED))
        self.assertEqual(
            result.skippedSymlinks,
            ("etc/shared/default/linked.conf", "etc/shared/evil"),
        )

    def test_badNamesSkipped(self):
        """
        Files whose names a peer would refuse (control characters,
        backslashes) are left out of the snapshot.
        """
        root = makeHome(self, SYNCED)
        shared = root.descendant(["etc", "shared", "default"])
        shared.child("bad\nname").setContent(b"x")
        shared.child("back\\slash").setContent(b"x")
        result = scanFiles(root, FILESET)
        self.assertEqual(sorted(result.snapshot.files), sorted(SYNCED))

    def test_unreadableReported(self):
        """
        A file that cannot be read is reported in C{errors} and left out.
        (Refused reads are simulated: root reads everything.)
        """
        from wazuhcluster import integrity

        root = makeHome(self, SYNCED)
        realHashFile = integrity.hashFile

        def refusing(path, buffer=None):
            if path.endswith("local_rules.xml"):
                raise PermissionError(13, "Permission denied", path)
            return realHashFile(path, buffer)

        self.patch(integrity, "hashFile", refusing)
        result = scanFiles(root, FILESET)
        self.assertNotIn("etc/rules/local_rules.xml", result.snapshot.files)
        self.assertEqual(len(result.errors), 1)
        self.assertIn("etc/rules/local_rules.xml", result.errors[0])

    def test_incrementalRehashesOnlyChanged(self):
        """
        A rescan with the previous snapshot re-hashes only files whose size,
        mtime, ctime or inode changed (a file replaced by another with the
        same size and mtime included), and picks up additions and deletions.
        """
        root = makeHome(self, SYNCED)
        ageFiles(root)
        first = scanFiles(root, FILESET).snapshot
        again = scanFiles(root, FILESET, first)
        self.assertEqual(again.rehashed, 0)
        self.assertEqual(again.snapshot, first)

        root.descendant(["etc", "rules", "local_rules.xml"]).setContent(b"<new/>")
        replaced = root.descendant(["etc", "lists", "audit-keys"])
        oldMtime = os.stat(replaced.path).st_mtime_ns
        replaced.remove()
        replaced.setContent(b"key:valu2\n")
        os.utime(replaced.path, ns=(oldMtime, oldMtime))
        root.descendant(["etc", "decoders", "new.xml"]).setContent(b"<d/>")
        root.descendant(["etc", "client.keys"]).remove()
        result = scanFiles(root, FILESET, again.snapshot)
        self.assertEqual(result.rehashed, 3)
        files = result.snapshot.files
        self.assertEqual(files["etc/rules/local_rules.xml"].md5, md5(b"<new/>"))
        self.assertEqual(files["etc/lists/audit-keys"].md5, md5(b"key:valu2\n"))
        self.assertIn("etc/decoders/new.xml", files)
        self.assertNotIn("etc/client.keys", files)

    def test_recentFilesRehashed(self):
        """
        Files modified within the racy window before a scan are hashed again
        by the next scan (their mtime may not move on a same-size rewrite).
        """
        root = makeHome(self, SYNCED)
        first = scanFiles(root, FILESET)
        second = scanFiles(root, FILESET, first.snapshot)
        self.assertEqual(second.rehashed, len(SYNCED))

    def test_digestFollowsContentSet(self):
        """
        The digest ignores modification times and changes when a path or a
        content changes.
        """
        root = makeHome(self, SYNCED)
        first = scanFiles(root, FILESET).snapshot
        ageFiles(root, 100)
        touched = scanFiles(root, FILESET).snapshot
        self.assertEqual(touched.digest, first.digest)
        root.descendant(["etc", "lists", "audit-keys"]).setContent(b"other\n")
        changed = scanFiles(root, FILESET).snapshot
        self.assertNotEqual(changed.digest, first.digest)
        root.descendant(["etc", "lists", "audit-keys"]).moveTo(
            root.descendant(["etc", "lists", "audit-keys2"])
        )
        moved = scanFiles(root, FILESET).snapshot
        self.assertNotEqual(moved.digest, changed.digest)

    def test_nestedItemNotWalkedTwice(self):
        """
        A recursive item leaves a subdirectory that is itself an item to that
        item: each file belongs to the item with the longest prefix.
        """
        inner = FileItem("etc/shared/default/", 0o600, ("all",), False, False)
        fileset = FileSet(
            items=FILESET.items + (inner,),
            excluded_files=FILESET.excluded_files,
            excluded_extensions=FILESET.excluded_extensions,
        )
        root = makeHome(self, SYNCED)
        files = scanFiles(root, fileset).snapshot.files
        self.assertEqual(
            files["etc/shared/default/agent.conf"].item, "etc/shared/default/"
        )
        self.assertNotIn("etc/shared/default/sca/custom.yml", files)
        self.assertEqual(files["etc/shared/ar.conf.bak"].item, "etc/shared/")


class HashFileTests(SynchronousTestCase):
    """
    Tests for L{hashFile}.
    """

    def test_largeFile(self):
        """
        Files larger than one read are hashed completely.
        """
        path = FilePath(self.mktemp())
        data = os.urandom(3 * 1024 * 1024 + 17)
        path.setContent(data)
        self.assertEqual(hashFile(path.path)[0], md5(data))

    def test_symlinkRefused(self):
        """
        A symlink is never followed.
        """
        target = FilePath(self.mktemp())
        target.setContent(b"x")
        link = FilePath(self.mktemp())
        os.symlink(target.path, link.path)
        self.assertRaises(OSError, hashFile, link.path)


manifests = st.dictionaries(
    validPaths(),
    st.tuples(
        st.binary(min_size=16, max_size=16).map(bytes.hex),
        st.integers(0, 2**40),
    ),
    max_size=60,
)


class SnapshotTests(SynchronousTestCase):
    """
    Tests for L{Snapshot} and L{FileMeta}.
    """

    def test_statKeyIgnored(self):
        """
        The private stat key is not part of equality.
        """
        a = FileMeta("0" * 32, 1.0, 1, "etc/", (1, 2, 3, 4))
        b = FileMeta("0" * 32, 1.0, 1, "etc/", None)
        self.assertEqual(a, b)
        self.assertEqual(
            Snapshot({"etc/client.keys": a}), Snapshot({"etc/client.keys": b})
        )

    def test_readOnly(self):
        """
        A snapshot's files cannot be changed, even through the mapping it
        was built from.
        """
        source = {"etc/client.keys": FileMeta("0" * 32, 1.0, 1, "etc/")}
        snapshot = Snapshot(source)
        source.clear()
        self.assertEqual(len(snapshot.files), 1)
        self.assertRaises(TypeError, operator.setitem, snapshot.files, "x", None)

    @given(manifests, st.floats(0, 2e9), st.floats(0, 2e9))
    def test_digestIgnoresMtime(self, manifest, t1, t2):
        """
        Snapshots with the same paths and MD5s have the same digest whatever
        their modification times; the empty snapshot's digest is stable.
        """
        def build(mtime):
            return Snapshot(
                {p: FileMeta(m, mtime, s, "etc/") for p, (m, s) in manifest.items()}
            )

        self.assertEqual(build(t1).digest, build(t2).digest)
        self.assertEqual(Snapshot.empty().digest, Snapshot({}).digest)


class ManifestTests(SynchronousTestCase):
    """
    Tests for L{encodeManifest} and L{decodeManifest}.
    """

    @given(manifests)
    def test_roundTrip(self, manifest):
        """
        Decoding the encoded chunks gives back the manifest.
        """
        self.assertEqual(decodeManifest(encodeManifest(manifest)), manifest)
        self.assertEqual(decodeManifest(encodeManifest(manifest), FILESET), manifest)

    def test_snapshotRoundTrip(self):
        """
        A L{Snapshot} encodes to its C{manifest()}.
        """
        root = makeHome(self, SYNCED)
        snapshot = scanFiles(root, FILESET).snapshot
        self.assertEqual(decodeManifest(encodeManifest(snapshot)), snapshot.manifest())

    def test_chunkBound(self):
        """
        Chunks never exceed L{MAX_CHUNK} bytes and each holds whole entries.
        """
        manifest = {
            f"etc/shared/group{i:05d}/{'n' * (i % 200 + 1)}": ("a" * 32, i)
            for i in range(5000)
        }
        chunks = list(encodeManifest(manifest))
        self.assertGreater(len(chunks), 5)
        for chunk in chunks:
            self.assertLessEqual(len(chunk), MAX_CHUNK)
            self.assertTrue(chunk.endswith(b"\n"))
            decodeManifest([chunk])
        self.assertEqual(decodeManifest(chunks), manifest)

    def test_empty(self):
        """
        An empty manifest is no chunk at all.
        """
        self.assertEqual(list(encodeManifest(Snapshot.empty())), [])
        self.assertEqual(decodeManifest([]), {})

    def test_malformedRejected(self):
        """
        Truncated chunks, wrong field counts, bad MD5s or sizes, duplicate
        entries, hostile paths and oversized chunks are rejected with
        L{MalformedManifest}.
        """
        good = f"etc/client.keys\t{'a' * 32}\t12\n"
        for chunks in [
            [good[:-1].encode()],
            [good.encode()[:20]],
            [b"etc/client.keys\t" + b"a" * 32 + b"\n"],
            [f"etc/client.keys\t{'a' * 32}\t1\textra\n".encode()],
            [f"etc/client.keys\t{'A' * 32}\t1\n".encode()],
            [f"etc/client.keys\t{'a' * 31}\t1\n".encode()],
            [f"etc/client.keys\t{'a' * 32}\t-1\n".encode()],
            [f"etc/client.keys\t{'a' * 32}\t01\n".encode()],
            [f"etc/client.keys\t{'a' * 32}\t1e3\n".encode()],
            [good.encode(), good.encode()],
            [f"/etc/client.keys\t{'a' * 32}\t1\n".encode()],
            [f"etc/../client.keys\t{'a' * 32}\t1\n".encode()],
            [f"\t{'a' * 32}\t1\n".encode()],
            [b"\xff\xfe\t" + b"a" * 32 + b"\t1\n"],
            [good.encode() * 2000],
            ["not bytes"],
        ]:
            self.assertRaises(MalformedManifest, decodeManifest, chunks)

    def test_decoderLimit(self):
        """
        L{ManifestDecoder} accepts chunks one at a time and refuses more
        entries than its limit.
        """
        decoder = ManifestDecoder(maxEntries=2)
        decoder.feed(f"etc/lists/a\t{'a' * 32}\t1\n".encode())
        decoder.feed(f"etc/lists/b\t{'b' * 32}\t2\n".encode())
        self.assertEqual(len(decoder.entries), 2)
        self.assertRaises(
            MalformedManifest, decoder.feed, f"etc/lists/c\t{'c' * 32}\t3\n".encode()
        )

    def test_filesetChecked(self):
        """
        With a file set, paths outside the synced set are rejected too.
        """
        chunk = f"etc/ossec.conf\t{'a' * 32}\t1\n".encode()
        self.assertEqual(decodeManifest([chunk]), {"etc/ossec.conf": ("a" * 32, 1)})
        self.assertRaises(MalformedManifest, decodeManifest, [chunk], FILESET)


class CompareTests(SynchronousTestCase):
    """
    Tests for L{compareManifests}.
    """

    @given(manifests, manifests, st.data())
    @settings(max_examples=200)
    def test_partition(self, master, worker, data):
        """
        Missing, shared and extra are sorted, disjoint, and say exactly what
        to do: applying them to the worker yields the master's manifest.
        """
        # Share some paths, with equal or different contents.
        common = []
        if master:
            common = data.draw(st.lists(st.sampled_from(sorted(master)), unique=True))
        for path in common:
            worker[path] = master[path] if data.draw(st.booleans()) else ("f" * 32, 1)
        result = compareManifests(master, worker)
        for part in (result.missing, result.shared, result.extra):
            self.assertEqual(list(part), sorted(set(part)))
        self.assertEqual(set(result.missing), master.keys() - worker.keys())
        self.assertEqual(set(result.extra), worker.keys() - master.keys())
        self.assertEqual(
            set(result.shared),
            {p for p in master.keys() & worker.keys() if master[p] != worker[p]},
        )
        applied = {p: v for p, v in worker.items() if p not in result.extra}
        applied.update({p: master[p] for p in result.missing + result.shared})
        self.assertEqual(applied, master)
        self.assertEqual(result.inSync, master == worker)

    @given(manifests)
    def test_selfInSync(self, manifest):
        """
        A manifest compared with itself is in sync.
        """
        self.assertTrue(compareManifests(manifest, dict(manifest)).inSync)

    def test_masterWins(self):
        """
        A file that differs is updated whatever the worker holds; worker-only
        files are extra.
        """
        master = {"etc/client.keys": ("a" * 32, 3), "etc/rules/r.xml": ("b" * 32, 1)}
        worker = {"etc/client.keys": ("c" * 32, 9), "etc/lists/l": ("d" * 32, 1)}
        result = compareManifests(master, worker)
        self.assertEqual(result.missing, ("etc/rules/r.xml",))
        self.assertEqual(result.shared, ("etc/client.keys",))
        self.assertEqual(result.extra, ("etc/lists/l",))
        self.assertFalse(result.inSync)


class IncrementalDigestTests(SynchronousTestCase):
    """
    The digest is a multiset hash updated in O(changes), and scans say what
    changed.
    """

    def setUp(self):
        self.fileset = FILESET

    def test_withChangesMatchesFullComputation(self):
        """
        Applying changes to a snapshot gives the digest a fresh computation
        over the resulting files gives, whatever the order of the files.
        """
        from wazuhcluster.integrity import FileMeta, Snapshot

        files = {f"etc/rules/r{i}.xml": FileMeta(md5(b"%d" % i), 0, 1, "etc/rules/")
                 for i in range(50)}
        before = Snapshot(files)
        changes = {"etc/rules/r3.xml": None,
                   "etc/rules/r4.xml": FileMeta(md5(b"new"), 0, 3, "etc/rules/"),
                   "etc/rules/new.xml": FileMeta(md5(b"x"), 0, 1, "etc/rules/")}
        after = before.withChanges(changes)
        expected = dict(files)
        del expected["etc/rules/r3.xml"]
        expected["etc/rules/r4.xml"] = changes["etc/rules/r4.xml"]
        expected["etc/rules/new.xml"] = changes["etc/rules/new.xml"]
        self.assertEqual(after.digest, Snapshot(dict(reversed(list(expected.items())))).digest)
        self.assertEqual(after.changesFrom(before), changes)
        self.assertNotEqual(after.digest, before.digest)

    def test_scanReportsChanges(self):
        """
        A rescan says which files were added, changed and removed, and its
        incrementally computed digest equals a full computation's.
        """
        root = makeHome(self, {"etc/rules/a.xml": b"a", "etc/rules/b.xml": b"b",
                               "etc/lists/c": b"c"})
        ageFiles(root)
        first = scanFiles(root, self.fileset)
        self.assertEqual(sorted(first.changes), ["etc/lists/c", "etc/rules/a.xml",
                                                 "etc/rules/b.xml"])
        root.preauthChild("etc/rules/a.xml").setContent(b"A")
        root.preauthChild("etc/rules/b.xml").remove()
        root.preauthChild("etc/rules/d.xml").setContent(b"d")
        second = scanFiles(root, self.fileset, first.snapshot)
        self.assertEqual(sorted(second.changes), ["etc/rules/a.xml", "etc/rules/b.xml",
                                                  "etc/rules/d.xml"])
        self.assertIsNone(second.changes["etc/rules/b.xml"])
        self.assertEqual(second.snapshot.digest, scanFiles(root, self.fileset).snapshot.digest)

    def test_touchIsNoChange(self):
        """
        A file rehashed because its metadata changed, with the same
        contents, is not a change.
        """
        root = makeHome(self, {"etc/rules/a.xml": b"a"})
        ageFiles(root)
        first = scanFiles(root, self.fileset)
        os.utime(root.preauthChild("etc/rules/a.xml").path, (1, 1))
        second = scanFiles(root, self.fileset, first.snapshot)
        self.assertEqual(second.rehashed, 1)
        self.assertEqual(second.changes, {})
        self.assertEqual(second.snapshot.digest, first.snapshot.digest)

    def test_undecodableNamesReported(self):
        """
        A file whose name is not UTF-8 is skipped and reported (like a
        symlink), not silently ignored.
        """
        root = makeHome(self, {"etc/rules/ok.xml": b"ok"})
        with open(os.path.join(root.path.encode(), b"etc/rules/bad\xff.xml"), "wb") as f:
            f.write(b"x")
        result = scanFiles(root, self.fileset)
        self.assertEqual(list(result.snapshot.files), ["etc/rules/ok.xml"])
        self.assertEqual(len(result.skippedNames), 1)
        self.assertIn("bad", result.skippedNames[0])


class DeltaTests(SynchronousTestCase):
    """
    Deltas travel as records (with removals) and compare in O(changes).
    """

    def test_roundTripWithRemovals(self):
        """
        A delta with removed files encodes and decodes back; a manifest
        decoder without deletions refuses the removal records.
        """
        from wazuhcluster.manifest import (
            MalformedManifest,
            decodeManifest,
            encodeManifest,
        )

        delta = {"etc/rules/a.xml": (md5(b"a"), 1), "etc/rules/gone.xml": None}
        chunks = encodeManifest(delta)
        self.assertEqual(decodeManifest(chunks, FILESET, deletions=True), delta)
        self.assertRaises(MalformedManifest, decodeManifest, chunks, FILESET)

    def test_compareDelta(self):
        """
        Against the worker's files, a delta says what to create, update and
        delete; entries the worker already matches need nothing.
        """
        from wazuhcluster.manifest import compareDelta

        worker = {"etc/rules/a.xml": ("1" * 32, 1), "etc/rules/b.xml": ("2" * 32, 1),
                  "etc/rules/c.xml": ("3" * 32, 1)}
        delta = {"etc/rules/a.xml": ("1" * 32, 1), "etc/rules/b.xml": ("9" * 32, 1),
                 "etc/rules/c.xml": None, "etc/rules/d.xml": ("4" * 32, 1),
                 "etc/rules/e.xml": None}
        comparison = compareDelta(delta, worker)
        self.assertEqual((comparison.missing, comparison.shared, comparison.extra),
                         (("etc/rules/d.xml",), ("etc/rules/b.xml",), ("etc/rules/c.xml",)))

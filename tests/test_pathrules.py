# -*- test-case-name: tests.test_pathrules -*-
"""
Tests for L{wazuhcluster.pathrules}.
"""

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

import wazuhcluster
from wazuhcluster.clusteritems import FileItem, FileSet
from wazuhcluster.pathrules import (
    UnsafePath,
    checkNotThroughSymlink,
    checkSyncedPath,
)


def shippedFileSet():
    """
    The L{FileSet} of the shipped C{wazuhcluster/cluster.json}.
    """
    path = FilePath(wazuhcluster.__file__).sibling("cluster.json")
    section = json.loads(path.getContent())["files"]
    items = tuple(
        FileItem(
            path=key,
            permissions=int(value["permissions"], 0),
            files=tuple(value["files"]),
            recursive=value["recursive"],
            remove_subdirs_if_empty=value["remove_subdirs_if_empty"],
            extra_valid=value["extra_valid"],
            restart=value["restart"],
            source=value["source"],
            description=value["description"],
        )
        for key, value in section.items()
        if key not in ("excluded_files", "excluded_extensions")
    )
    return FileSet(
        items=items,
        excluded_files=frozenset(section["excluded_files"]),
        excluded_extensions=tuple(section["excluded_extensions"]),
    )


FILESET = shippedFileSet()
ALL_ITEMS = ["etc/shared/", "etc/rules/", "etc/decoders/", "etc/lists/"]

# Names that are valid path components and not excluded.
_nameChars = st.characters(
    blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"
)
names = (
    st.text(_nameChars, min_size=1, max_size=20)
    .filter(lambda n: n not in (".", ".."))
    .filter(lambda n: not FILESET.isExcluded(n))
    .filter(lambda n: len(n.encode("utf-8")) <= 255)
)

# Names that are not the directory of an item under etc/ or var/.
plainNames = names.filter(
    lambda n: n not in ("shared", "rules", "decoders", "lists", "multigroups")
)


@st.composite
def validPaths(draw):
    """
    Paths that name a synced file of the shipped file set.
    """
    kind = draw(st.sampled_from(["keys", "all", "multigroup"]))
    if kind == "keys":
        return "etc/client.keys"
    dirs = draw(st.lists(names, max_size=4))
    if kind == "multigroup":
        return "/".join(["var/multigroups", *dirs, "merged.mg"])
    item = draw(st.sampled_from(ALL_ITEMS))
    return item + "/".join([*dirs, draw(names)])


@st.composite
def hostilePaths(draw):
    """
    Paths that must all be refused, built by damaging a valid one.
    """
    valid = draw(validPaths())
    damage = draw(
        st.sampled_from(
            [
                "absolute",
                "dotdot",
                "dot",
                "empty",
                "control",
                "backslash",
                "excludedName",
                "excludedExtension",
                "outside",
                "keysSubdir",
                "keysOtherName",
                "multigroupOtherName",
                "trailingSlash",
            ]
        )
    )
    segments = valid.split("/")
    where = draw(st.integers(0, len(segments) - 1))
    if damage == "absolute":
        return "/" + valid
    if damage in ("dotdot", "dot", "empty"):
        bad = {"dotdot": "..", "dot": ".", "empty": ""}[damage]
        return "/".join(segments[:where] + [bad] + segments[where:])
    if damage == "control":
        char = draw(st.sampled_from(["\x00", "\n", "\t", "\x1b", "\x7f", "\x85"]))
        segments[where] = segments[where] + char
        return "/".join(segments)
    if damage == "backslash":
        segments[where] = segments[where] + "\\x"
        return "/".join(segments)
    if damage == "excludedName":
        segments[-1] = draw(st.sampled_from(["ossec.conf", "ar.conf"]))
        return "/".join(segments)
    if damage == "excludedExtension":
        segments[-1] += draw(st.sampled_from(["~", ".tmp", ".lock", ".swp"]))
        return "/".join(segments)
    if damage == "outside":
        top = draw(st.sampled_from(["var/db", "queue/cluster", "logs", "bin", "etc"]))
        return top + "/" + draw(plainNames) + "/" + segments[-1]
    if damage == "keysSubdir":
        return "etc/" + draw(plainNames) + "/client.keys"
    if damage == "keysOtherName":
        return "etc/" + draw(names.filter(lambda n: n != "client.keys"))
    if damage == "multigroupOtherName":
        name = draw(names.filter(lambda n: n != "merged.mg"))
        return "var/multigroups/" + draw(names) + "/" + name
    return valid + "/"


class CheckSyncedPathTests(SynchronousTestCase):
    """
    Tests for L{checkSyncedPath}.
    """

    @given(validPaths())
    @settings(max_examples=300)
    def test_validAccepted(self, path):
        """
        A normalised relative path inside an item that matches its rule is
        accepted, and the item with the longest prefix is returned.
        """
        item = checkSyncedPath(FILESET, path)
        self.assertTrue(path.startswith(item.path))
        longer = [
            other
            for other in FILESET.items
            if path.startswith(other.path) and len(other.path) > len(item.path)
        ]
        self.assertEqual(longer, [])

    @given(hostilePaths())
    @settings(max_examples=500)
    def test_hostileRefused(self, path):
        """
        Absolute paths, C{.}/C{..}/empty components, control characters,
        backslashes, excluded names and extensions, paths outside the items,
        subdirectories of non-recursive items and names outside the file rule
        are all refused with L{UnsafePath}.
        """
        self.assertRaises(UnsafePath, checkSyncedPath, FILESET, path)

    def test_examples(self):
        """
        The shipped items: client.keys only at the top of etc/, merged.mg only
        under var/multigroups, everything but excluded names elsewhere.
        """
        accepted = {
            "etc/client.keys": "etc/",
            "etc/shared/default/agent.conf": "etc/shared/",
            "etc/shared/default/sca/custom.yml": "etc/shared/",
            "etc/rules/local_rules.xml": "etc/rules/",
            "etc/lists/amazon/aws-eventnames": "etc/lists/",
            "var/multigroups/1a2b/merged.mg": "var/multigroups/",
        }
        for path, itemPath in accepted.items():
            self.assertEqual(checkSyncedPath(FILESET, path).path, itemPath)
        for path in [
            "etc/ossec.conf",
            "etc/shared/ar.conf",
            "etc/shared/default/ossec.conf",
            "etc/rules/local_rules.xml.swp",
            "etc/shared/client.keys/x/../y",
            "etc/sslcluster/node.key",
            "var/multigroups/1a2b/agent.conf",
            "etc/shared/",
            "etc/shared",
            "etc/",
            "",
            "etc//client.keys",
            "./etc/client.keys",
        ]:
            self.assertRaises(UnsafePath, checkSyncedPath, FILESET, path)

    def test_notText(self):
        """
        A path that is not a L{str} (e.g. raw bytes) is refused.
        """
        self.assertRaises(UnsafePath, checkSyncedPath, FILESET, b"etc/client.keys")
        self.assertRaises(UnsafePath, checkSyncedPath, FILESET, None)

    def test_tooLong(self):
        """
        Components over 255 bytes and paths over 4096 bytes are refused.
        """
        self.assertRaises(
            UnsafePath, checkSyncedPath, FILESET, "etc/shared/" + "a" * 256
        )
        deep = "etc/shared/" + "/".join(["d" * 200] * 21) + "/f"
        self.assertRaises(UnsafePath, checkSyncedPath, FILESET, deep)

    def test_messageSaysWhy(self):
        """
        The error carries the path, a reason, and Wazuh's error code 3022.
        """
        error = self.assertRaises(
            UnsafePath, checkSyncedPath, FILESET, "etc/shared/../ossec.conf"
        )
        self.assertEqual(error.code, 3022)
        self.assertEqual(error.path, "etc/shared/../ossec.conf")
        self.assertIn("'..'", str(error))


class CheckNotThroughSymlinkTests(SynchronousTestCase):
    """
    Tests for L{checkNotThroughSymlink}.
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.root.child("etc").child("shared").child("default").makedirs()
        self.outside = FilePath(self.mktemp())
        self.outside.makedirs()

    def test_plainPathAccepted(self):
        """
        A path whose existing components are real directories and files, and
        whose tail does not exist yet, is accepted.
        """
        self.root.preauthChild("etc/shared/default/agent.conf").setContent(b"x")
        checkNotThroughSymlink(self.root, "etc/shared/default/agent.conf")
        checkNotThroughSymlink(self.root, "etc/shared/new/sub/agent.conf")

    def test_symlinkedDirectoryRefused(self):
        """
        A symlink to a directory anywhere on the way is refused.
        """
        os.symlink(self.outside.path, self.root.preauthChild("etc/shared/evil").path)
        error = self.assertRaises(
            UnsafePath, checkNotThroughSymlink, self.root, "etc/shared/evil/agent.conf"
        )
        self.assertIn("etc/shared/evil", error.reason)

    def test_symlinkedFileRefused(self):
        """
        A final component that is a symlink (even a dangling one) is refused.
        """
        link = self.root.descendant(["etc", "shared", "default", "agent.conf"])
        os.symlink(self.outside.child("nothing").path, link.path)
        self.assertRaises(
            UnsafePath,
            checkNotThroughSymlink,
            self.root,
            "etc/shared/default/agent.conf",
        )

    def test_stopsAtFile(self):
        """
        A regular file where a directory is expected ends the walk without a
        symlink complaint (nothing can be reached through it).
        """
        self.root.descendant(["etc", "shared", "afile"]).setContent(b"x")
        checkNotThroughSymlink(self.root, "etc/shared/afile/agent.conf")

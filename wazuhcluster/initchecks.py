# -*- test-case-name: tests.test_init,tests.test_cli -*-
"""
What C{wazuh-cluster init} checks before it writes anything (the paths it
is given, the CA directory's content), and how it removes what a failed run
created.
"""

import os
import shutil

from attrs import frozen

from wazuhcluster.errors import ClusterError


def _nearestExisting(path):
    """
    C{path} itself if it exists, else its nearest existing ancestor.
    """
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def checkDirectory(path, option, writable=False):
    """
    Refuse a path that must be (or become) a directory this user can write.

    @param writable: an existing C{path} must be writable too (otherwise
        only the directory it would be created in is checked).
    @raise ClusterError: 1006 when C{path} is a file, or it (or the
        directory it would be created in) cannot be written.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ClusterError(f"{option} {path} is not a directory", 1006)
    if writable and os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
        raise ClusterError(f"{option} {path} is not writable by this user", 1006)
    existing = _nearestExisting(path)
    if not os.path.isdir(existing):
        raise ClusterError(
            f"{option} {path} cannot be created: {existing} is not a directory", 1006)
    if existing != path and not os.access(existing, os.W_OK | os.X_OK):
        raise ClusterError(
            f"{option} {path} cannot be created: {existing} is not writable "
            "by this user", 1006)


def checkCaOutsideHome(home, caDir):
    """
    @raise ClusterError: when the CA directory is the home or inside it (its
        private key would then live on a node).
    """
    homeReal = os.path.realpath(home.root.path)
    caReal = os.path.realpath(caDir.path)
    if caReal == homeReal or caReal.startswith(homeReal.rstrip(os.sep) + os.sep):
        raise ClusterError(
            f"--ca {caDir.path} is inside the node home {home.root.path}: the CA "
            "directory holds the CA's private key and the cluster key, which must "
            "never enter a node home; keep it elsewhere (e.g. on the host that "
            "initialises the nodes)", 1006)


def checkAuthorityFiles(caDir, key):
    """
    Refuse a CA directory that lost part of its content, before anything
    is written.

    @raise ClusterError: when C{ca.pem} and C{ca.key} do not come together,
        or C{cluster.key} is gone from a CA that has nodes (a new random key
        would lock every later node out with 3025) and C{key} does not
        restore it.
    """
    caCert, caKey = caDir.child("ca.pem"), caDir.child("ca.key")
    if caCert.exists() != caKey.exists():
        raise ClusterError(
            f"Incomplete certificate authority in {caDir.path}: ca.pem and ca.key "
            "must both exist or both be absent", 3004)
    if caCert.exists() and not caDir.child("cluster.key").exists() and key is None:
        raise ClusterError(
            f"{caDir.child('cluster.key').path} is missing, but {caDir.path} holds a "
            "CA: the nodes made from it use the cluster key it held. Restore it: "
            "copy the <key> of any node's etc/ossec.conf into that file, or pass "
            "that key with --key", 3004)


@frozen
class InitUndo:
    """
    What a run of init created (new directories, new CA files), to remove
    if it fails.
    """

    paths: tuple

    @classmethod
    def before(cls, home, caDir):
        paths = []
        for path in (caDir.path, home.root.path):
            top = path
            while not os.path.lexists(os.path.dirname(top)) and os.path.dirname(top) != top:
                top = os.path.dirname(top)
            if not os.path.lexists(path):
                paths.append(top)
        for name in ("ca.pem", "ca.key", "cluster.key"):
            child = caDir.child(name)
            if not child.exists():
                paths.append(child.path)
        return cls(tuple(paths))

    def run(self):
        for path in self.paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                try:
                    os.remove(path)
                except OSError:
                    pass

# -*- test-case-name: tests.test_init -*-
"""
The node home: the equivalent of C{/var/ossec}, and where everything lives in it.
"""

import os

from attrs import frozen
from twisted.python.filepath import FilePath


@frozen
class NodeHome:
    """
    Paths of one node's home directory (DESIGN.md, "Node home").

    @ivar root: the home directory.
    """

    root: FilePath

    @classmethod
    def fromPath(cls, path):
        """
        Build a L{NodeHome} from a path given by a user (relative paths are
        made absolute).
        """
        if isinstance(path, FilePath):
            return cls(path)
        return cls(FilePath(os.path.abspath(os.path.expanduser(path))))

    def child(self, relpath):
        """
        The L{FilePath} of C{relpath}, a C{/}-separated path relative to the
        home.
        """
        return self.root.preauthChild(relpath)

    @property
    def etc(self):
        return self.root.child("etc")

    @property
    def ossecConf(self):
        return self.etc.child("ossec.conf")

    @property
    def clusterJsonOverrides(self):
        return self.etc.child("cluster.json")

    @property
    def sslDir(self):
        return self.etc.child("sslcluster")

    @property
    def caCert(self):
        return self.sslDir.child("ca.pem")

    @property
    def nodeCert(self):
        return self.sslDir.child("node.pem")

    @property
    def nodeKey(self):
        return self.sslDir.child("node.key")

    @property
    def clientKeys(self):
        return self.etc.child("client.keys")

    @property
    def shared(self):
        return self.etc.child("shared")

    @property
    def multigroups(self):
        return self.root.child("var").child("multigroups")

    @property
    def globalDb(self):
        return self.root.child("queue").child("db").child("global.db")

    @property
    def clusterQueue(self):
        return self.root.child("queue").child("cluster")

    @property
    def controlSocket(self):
        return self.clusterQueue.child("c-internal.sock")

    def staging(self, peer):
        """
        The staging directory for transfers from or to C{peer}.
        """
        return self.clusterQueue.child(peer)

    @property
    def logs(self):
        return self.root.child("logs")

    @property
    def clusterLog(self):
        return self.logs.child("cluster.log")

    def createLayout(self):
        """
        Create every directory of the layout that does not exist yet.
        """
        for path, mode in [
            (self.etc, 0o770),
            (self.sslDir, 0o700),
            (self.shared, 0o770),
            (self.etc.child("rules"), 0o770),
            (self.etc.child("decoders"), 0o770),
            (self.etc.child("lists"), 0o770),
            (self.multigroups, 0o770),
            (self.globalDb.parent(), 0o770),
            (self.clusterQueue, 0o770),
            (self.logs, 0o770),
        ]:
            if not path.isdir():
                path.makedirs(ignoreExistingDirectory=True)
                path.chmod(mode)

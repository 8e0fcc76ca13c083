# -*- test-case-name: tests.test_config -*-
"""
Configuration: the C{<cluster>} block of C{etc/ossec.conf} (validated with the
original's rules and error texts, WAZUH.md section 1) and the cluster items:
the shipped C{wazuhcluster/cluster.json} with C{etc/cluster.json} overrides
merged over it (intervals and the synced file set, WAZUH.md section 2).
"""

from attrs import field, frozen


@frozen
class ClusterConfig:
    """
    The validated C{<cluster>} block of one node.

    @ivar nodes: the C{<nodes><node>} values; only C{nodes[0]} is used: the
        master address workers dial (and the C{ip} the master reports).
    @ivar warnings: non-fatal remarks made while reading (deprecated node type
        C{client}, more than one node...), for the caller to log.
    """

    name: str
    node_name: str
    node_type: str
    key: str
    port: int
    bind_addr: str
    nodes: tuple
    hidden: bool = False
    disabled: bool = False
    warnings: tuple = field(default=(), eq=False)

    @property
    def masterHost(self):
        """
        The address of the master (C{nodes[0]}).
        """
        return self.nodes[0]


@frozen
class FileItem:
    """
    One synced item of the C{files} section of cluster.json.

    @ivar path: the item key, a directory relative to the home ending in C{/}
        (e.g. C{etc/shared/}).
    @ivar permissions: the mode applied to every file of the item.
    @ivar files: C{("all",)} or the exact basenames to sync.
    """

    path: str
    permissions: int
    files: tuple
    recursive: bool
    remove_subdirs_if_empty: bool
    extra_valid: bool = False
    restart: bool = False
    source: str = "master"
    description: str = ""

    def matchesName(self, basename):
        """
        Whether the item's file rule admits a file called C{basename}.
        """
        return "all" in self.files or basename in self.files


@frozen
class FileSet:
    """
    The whole synced file set: items plus exclusions.
    """

    items: tuple
    excluded_files: frozenset
    excluded_extensions: tuple

    def isExcluded(self, basename):
        """
        Whether a file called C{basename} is never synced.
        """
        return basename in self.excluded_files or basename.endswith(
            self.excluded_extensions
        )


@frozen
class ClusterItems:
    """
    The effective cluster.json: intervals by section and the file set.

    @ivar worker: C{intervals.worker} as a dict of numbers.
    @ivar master: C{intervals.master} as a dict of numbers.
    @ivar communication: C{intervals.communication} as a dict of numbers.
    @ivar fileset: the L{FileSet}.
    @ivar raw: the merged JSON document (for C{check-config}).
    """

    worker: dict
    master: dict
    communication: dict
    fileset: FileSet
    raw: dict = field(eq=False, repr=False)

# -*- test-case-name: tests.test_agentdb -*-
"""
The agent store: the one interface behind which a node keeps its agents,
with three backends (DESIGN.md, "Beside a Wazuh manager"):

  - C{sqlite}: our own schema in C{queue/db/global.db} (the embedded
    default; every worker's local store), L{wazuhcluster.agentdb};
  - C{postgresql}: the same schema on a PostgreSQL server shared by every
    master candidate (standby masters);
  - C{wazuh-db}: the manager's own wazuh-db (C{queue/db/wdb} and its HTTP
    API), when the node replaces C{wazuh-clusterd} beside a Wazuh manager.

Every method returns a L{twisted.internet.defer.Deferred} and never blocks
the reactor thread. Agent IDs come back as 3-digit strings (C{"001"}) and
are accepted as such or as numbers. Errors a user or a peer can cause are
L{wazuhcluster.errors.ClusterError}s with Wazuh's codes.

Rows exchanged between the nodes (see L{wazuhcluster.agentsync} for the wire
format):

  - an I{agent-info row} is a dict with C{id}, C{sync_version} (worker side
    only), C{labels} (a dict) and the columns of C{AGENT_INFO_FIELDS};
  - an I{assignment} is C{(id, [group, ...], group_version)}.
"""

from zope.interface import Interface


class IAgentStore(Interface):
    """
    Where a node keeps its agents, their status and their groups.
    """

    def close():
        """
        Release the store (connections, threads).

        @return: a Deferred firing once released; no method may be called
            after it.
        """

    # -- both sides ----------------------------------------------------------

    def reconcileClientKeys(entries):
        """
        Make the agents match C{client.keys}: agents not in C{entries} are
        deleted, new ones added (never connected, no group unless an
        assignment arrived for them earlier), names, IPs and keys updated.

        @param entries: L{wazuhcluster.clientkeys.ClientKey}s.
        @return: a Deferred firing with C{(added, removed)}, two lists of
            3-digit IDs.
        """

    def listAgents():
        """
        Every agent but the manager, by ID.

        @return: a Deferred firing with a list of dicts with keys C{id},
            C{name}, C{ip}, C{status}, C{version}, C{node_name}, C{groups}
            (list), C{os_name}, C{os_version}, C{last_keepalive} (ISO 8601 or
            L{None}).
        """

    def countActiveAgents(nodeName=None):
        """
        @return: a Deferred firing with the number of active agents
            (reporting to C{nodeName} when given).
        """

    # -- worker side -------------------------------------------------------------

    def agentInfoToSync(limit=None, afterId=None):
        """
        The agent-info rows changed since they were last acknowledged by the
        master, by ID (at most C{limit}, IDs above C{afterId}).  Reading them
        does not mark them synced.

        @return: a Deferred firing with a list of agent-info rows.
        """

    def markAgentInfoSynced(pairs):
        """
        The master acknowledged these rows: mark them synced, only where the
        row's C{sync_version} is still the one sent (a row that changed
        meanwhile stays to be sent).

        @param pairs: C{(id, sync_version)}.
        @return: a Deferred firing with the number of rows marked.
        """

    def applyGroupAssignments(rows, full=False):
        """
        Store assignments received from the master in one transaction, with
        the master's versions; an assignment for an agent this node does not
        know yet is kept aside until it appears.

        @param rows: assignments.
        @param full: C{rows} is the master's whole table: agents absent from
            it lose their groups.
        @return: a Deferred firing with C{(applied, pending)}.
        """

    def globalGroupHash():
        """
        @return: a Deferred firing with the hash of every assignment (equal
            on two nodes holding the same assignments), or L{None} when no
            agent has a group.
        """

    def groupedAgentNumbers():
        """
        The agents the global hash counts: those with at least one group.
        What a cache of the assignments needs to drop the agents removed
        since it was read, without reading every assignment again.

        @return: a Deferred firing with a list of agent numbers (C{int}).
        """

    # -- master side -------------------------------------------------------------

    def applyAgentInfo(nodeName, rows, ownership=None):
        """
        Store agent-info rows received from worker C{nodeName} in one
        transaction, for the agents this node knows (others are counted and
        ignored); a column a row does not carry keeps its stored value.  An
        agent seen active that never had a group gets C{default}.

        @param rows: agent-info rows, or already validated
            L{wazuhcluster.agentdb.AgentInfo} tuples.
        @param ownership: an L{wazuhcluster.agentdb.ownership.OwnershipRule}:
            store only the rows of agents C{nodeName} may report.
        @return: a Deferred firing with C{(updated, unknown)}, or with an
            L{wazuhcluster.agentdb.ownership.ApplyOutcome} when
            C{ownership} is given.
        """

    def groupSnapshot(version=None):
        """
        The assignments that changed after group version C{version} (all of
        them when L{None}), the current version and the global hash, read in
        one consistent snapshot.

        @return: a Deferred firing with C{(rows, currentVersion, hash)}.
        """

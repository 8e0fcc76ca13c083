# -*- test-case-name: tests.test_agentdb_agentinfo,tests.test_agentdb_groups,tests.test_agentdb -*-
"""
The agent database's queries for the cluster's syncs: C{client.keys}
reconciliation and agent info on a worker, agent info and group
assignments on the master (L{AgentSyncQueries}).
"""

from twisted.internet.defer import fail

from wazuhcluster.agentdb import agentinfo, management
from wazuhcluster.agentdb import groups as grouping
from wazuhcluster.agentdb.values import epoch
from wazuhcluster.clientkeys import parseAgentId
from wazuhcluster.errors import ClusterError


class AgentSyncQueries:
    """
    The sync methods of L{wazuhcluster.agentdb.database.AgentDatabase}.

    A mixin: the class it is mixed into provides C{_run(interaction,
    *args)} and C{_withAgent(interaction, agentId, *args)}, which run an
    interaction in the database's pool and return a L{Deferred}.
    """

    __slots__ = ()

    # Worker side: client.keys and agent info

    def reconcileClientKeys(self, entries):
        """
        Make the agent table match C{client.keys}: agents not in C{entries}
        are deleted, new ones added (never connected, no group, unless an
        assignment for them arrived earlier), names, IPs and keys updated.

        @type entries: L{list} of L{wazuhcluster.clientkeys.ClientKey}
        @return: a L{Deferred} firing with C{(added, removed)}, two lists of
            3-digit IDs.
        """
        return self._run(management.txnReconcile, list(entries), epoch(None))

    def reportAgent(
        self,
        agentId,
        status="active",
        os=None,
        version=None,
        labels=None,
        nodeName=None,
        now=None,
    ):
        """
        Record what an agent reported to this node and mark its row for
        agent-info sync (C{sync_status='syncreq'}, C{sync_version} bumped).

        @param status: one of L{CONNECTION_STATUSES}. C{active} sets
            C{last_keepalive}, C{disconnected} sets C{disconnection_time}.
        @param os: values of L{OS_FIELDS} to set, by column name; others are
            kept.
        @param version: the agent version (kept when L{None}).
        @param labels: the agent's labels, replacing all of them (kept when
            L{None}).
        @param nodeName: the node the agent reports to.
        @param now: the time of the report as an epoch (now by default).
        @return: a L{Deferred} firing with the row's new C{sync_version}.
        @raise ClusterError: (in the L{Deferred}) 1701 for an unknown agent,
            1703 for 000, 1000 for an invalid status.
        """
        try:
            columns = agentinfo.reportAssignments(
                status, os, version, nodeName, epoch(now)
            )
        except (ClusterError, ValueError):
            return fail()
        return self._withAgent(
            agentinfo.txnReportAgent,
            agentId,
            columns,
            None if labels is None else dict(labels),
        )

    def agentInfoToSync(self, limit=None, afterId=None):
        """
        The rows marked for agent-info sync, by ID.

        @param limit: the most rows to return (all when L{None}).
        @param afterId: return only agents with a higher ID (to page through
            the marked rows while earlier pages are not acknowledged yet).
        @return: a L{Deferred} firing with a L{list} of L{dict}s: C{id},
            C{sync_version}, C{labels} (dict) and every L{AGENT_INFO_FIELDS}
            column. This is the row format of L{applyAgentInfo}.
        """
        try:
            after = 0 if afterId is None else parseAgentId(afterId)
        except ValueError:
            return fail()
        return self._run(agentinfo.txnAgentInfoToSync, limit, after)

    def markAgentInfoSynced(self, pairs):
        """
        Mark rows synced after the master acknowledged them, only where the
        row's C{sync_version} is still the one that was sent: a row reported
        again meanwhile stays marked for the next sync.

        @param pairs: C{(id, sync_version)} as returned by
            L{agentInfoToSync}.
        @return: a L{Deferred} firing with the number of rows marked synced.
        """
        return self._run(agentinfo.txnMarkSynced, list(pairs))

    # Master side: agent info and groups

    def applyAgentInfo(self, nodeName, rows, ownership=None):
        """
        Store agent-info rows received from worker C{nodeName}, in one
        transaction: the L{AGENT_INFO_FIELDS} columns the row carries (a
        column it does not carry, and a L{None} integer, keep the stored
        value), C{node_name}, and the labels (replaced when the row has a
        C{labels} key). Rows of agents this node does not know are counted
        and ignored. An agent seen C{active} that never had a group
        assignment gets L{DEFAULT_GROUP}, with a new group version.

        @param rows: dicts as made by L{agentInfoToSync} (C{sync_version}
            is ignored), or L{AgentInfo} rows (already validated).
        @param ownership: an L{wazuhcluster.agentdb.ownership.OwnershipRule}:
            only the rows of agents C{nodeName} may report are stored.
        @return: a L{Deferred} firing with C{(updated, unknown)}, or with an
            L{wazuhcluster.agentdb.ownership.ApplyOutcome} when
            C{ownership} is given.
        @raise ValueError: (in the L{Deferred}) a row is malformed; nothing
            is stored.
        """
        return self._run(agentinfo.txnApplyAgentInfo, nodeName, list(rows), ownership)

    def groupChangesSince(self, version):
        """
        The assignments that changed after group version C{version}.

        @return: a L{Deferred} firing with C{(rows, currentVersion)}; rows
            are C{(id, groups, group_version)} by ID, C{groups} a list in
            priority order (empty for an agent whose groups were cleared).
        """
        return self._run(grouping.txnGroupChangesSince, version)

    def allGroupAssignments(self):
        """
        Every agent's assignment (agents with no group included, with an
        empty list).

        @return: a L{Deferred} firing with C{(rows, currentVersion)} as
            L{groupChangesSince}.
        """
        return self._run(grouping.txnAllGroupAssignments)

    def groupedAgentNumbers(self):
        """
        The numbers of the agents with at least one group (those the global
        hash counts).

        @return: a L{Deferred} firing with a list of C{int}.
        """
        return self._run(grouping.txnGroupedAgentNumbers)

    def globalGroupHash(self):
        """
        The hash of every assignment, equal on two nodes holding the same
        assignments: the multiset hash of C{(id, group_hash)} of every agent
        with a group (L{wazuhcluster.grouphash}; Wazuh hashes the
        C{group_hash} values alone: the ID makes swapped assignments
        visible).

        @return: a L{Deferred} firing with the hex digest, or L{None} when no
            agent has a group.
        """
        return self._run(grouping.txnGlobalGroupHash)

    def groupSnapshot(self, version=None):
        """
        L{groupChangesSince} C{version} (L{allGroupAssignments} when
        L{None}) and L{globalGroupHash}, read in one transaction, so the
        hash is that of the assignments returned.

        @return: a L{Deferred} firing with C{(rows, currentVersion, hash)}.
        """
        return self._run(grouping.txnGroupSnapshot, version)

    def applyGroupAssignments(self, rows, full=False):
        """
        Store assignments received from the master, in one transaction,
        marked synced, with the master's versions. An assignment for an
        agent this node does not know yet is kept aside and applied when
        L{reconcileClientKeys} adds the agent.

        @param rows: C{(id, groups, group_version)} as made by
            L{groupChangesSince}.
        @param full: C{rows} is the master's whole table: agents absent from
            it get their groups cleared, and earlier kept-aside assignments
            are dropped.
        @return: a L{Deferred} firing with C{(applied, pending)}: rows
            stored, and rows kept aside for unknown agents.
        @raise ValueError: (in the L{Deferred}) a row is malformed; nothing
            is stored.
        """
        return self._run(
            grouping.txnApplyGroupAssignments, [tuple(row) for row in rows], full
        )

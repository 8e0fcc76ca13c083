# -*- test-case-name: tests.test_control -*-
"""
Health of the cluster: the per-worker status the master keeps, with the field
names and C{'n/a'} defaults of the original (WAZUH.md section 4.8).
"""

import datetime

from attrs import Factory, define

NA = "n/a"


def isoDate(timestamp):
    """
    A POSIX timestamp as the original's date string
    (C{%Y-%m-%dT%H:%M:%S.%fZ}, UTC), or C{'n/a'} for L{None}.
    """
    if timestamp is None:
        return NA
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@define
class TaskTimes:
    """
    When a task last started and ended, and what it did.
    """

    start: float = None
    end: float = None
    chunks: int = 0

    def begin(self, now):
        self.start = now
        self.end = None

    def finish(self, now, chunks=0):
        self.end = now
        self.chunks = chunks


@define
class WorkerStatus:
    """
    What the master knows about one connected worker's work.
    """

    last_keep_alive: float = None
    sync_integrity_free: bool = True
    integrity_check: TaskTimes = Factory(TaskTimes)
    integrity_sync: TaskTimes = Factory(TaskTimes)
    total_files: dict = Factory(lambda: {"missing": 0, "shared": 0, "extra": 0})
    integrity_in_sync: bool = False
    sync_agent_info_free: bool = True
    agent_info: TaskTimes = Factory(TaskTimes)
    agent_groups: TaskTimes = Factory(TaskTimes)
    agent_groups_full: TaskTimes = Factory(TaskTimes)

    def toDict(self):
        """
        The C{status} block of C{get_health} for this worker.
        """
        return {
            "sync_integrity_free": self.sync_integrity_free,
            "last_check_integrity": {
                "date_start_master": isoDate(self.integrity_check.start),
                "date_end_master": isoDate(self.integrity_check.end),
            },
            "last_sync_integrity": {
                "date_start_master": isoDate(self.integrity_sync.start),
                "date_end_master": isoDate(self.integrity_sync.end),
                "total_extra_valid": 0,
                "total_files": dict(self.total_files),
            },
            "integrity_in_sync": self.integrity_in_sync,
            "sync_agent_info_free": self.sync_agent_info_free,
            "last_sync_agentinfo": {
                "date_start_master": isoDate(self.agent_info.start),
                "date_end_master": isoDate(self.agent_info.end),
                "n_synced_chunks": self.agent_info.chunks,
            },
            "last_sync_agentgroup": {
                "date_start": isoDate(self.agent_groups.start),
                "date_end": isoDate(self.agent_groups.end),
                "n_synced_chunks": self.agent_groups.chunks,
            },
            "last_sync_full_agentgroup": {
                "date_start": isoDate(self.agent_groups_full.start),
                "date_end": isoDate(self.agent_groups_full.end),
                "n_synced_chunks": self.agent_groups_full.chunks,
            },
            "last_keep_alive": isoDate(self.last_keep_alive),
        }


def nodeInfo(name, nodeType, version, ip, activeAgents=0):
    """
    The C{info} block of C{get_health} (and a row of C{get_nodes} without
    C{n_active_agents}).
    """
    return {
        "name": name,
        "type": nodeType,
        "version": version,
        "ip": ip,
        "n_active_agents": activeAgents,
    }

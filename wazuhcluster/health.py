# -*- test-case-name: tests.test_control -*-
"""
Health of the cluster: the per-worker status fields of the original (WAZUH.md
section 4.8), with its field names and C{'n/a'} defaults.

Each feature session fills its own fields (L{wazuhcluster.session.
IFeatureSession.health}); L{workerStatus} merges them over the defaults, so
a worker's status block always has every field.
"""

import datetime

from attrs import define

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

    @property
    def duration(self):
        """
        Seconds the last completed run took, or L{None}.
        """
        if self.start is None or self.end is None:
            return None
        return max(self.end - self.start, 0.0)

    def masterDates(self):
        """
        C{{date_start_master, date_end_master}}.
        """
        return {"date_start_master": isoDate(self.start),
                "date_end_master": isoDate(self.end)}

    def dates(self, chunks=False):
        """
        C{{date_start, date_end}} (and C{n_synced_chunks}).
        """
        block = {"date_start": isoDate(self.start), "date_end": isoDate(self.end)}
        if chunks:
            block["n_synced_chunks"] = self.chunks
        return block


def defaultStatus():
    """
    The status block of a worker nothing is known about yet.
    """
    return {
        "sync_integrity_free": True,
        "last_check_integrity": {"date_start_master": NA, "date_end_master": NA},
        "last_sync_integrity": {
            "date_start_master": NA,
            "date_end_master": NA,
            "total_extra_valid": 0,
            "total_files": {"missing": 0, "shared": 0, "extra": 0},
        },
        "integrity_in_sync": False,
        "sync_agent_info_free": True,
        "last_sync_agentinfo": {"date_start_master": NA, "date_end_master": NA,
                                "n_synced_chunks": 0},
        "last_sync_agentgroup": {"date_start": NA, "date_end": NA, "n_synced_chunks": 0},
        "last_sync_full_agentgroup": {"date_start": NA, "date_end": NA,
                                      "n_synced_chunks": 0},
        "last_keep_alive": NA,
    }


def workerStatus(fields):
    """
    The C{status} block of C{get_health} for one worker: C{fields} (what its
    sessions report) over the defaults.
    """
    status = defaultStatus()
    status.update(fields)
    return status


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

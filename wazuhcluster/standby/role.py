# -*- test-case-name: tests.test_standby_role -*-
"""
What a master knows of the roles: which master is active and since when
(L{ActiveMaster}), its own role (L{ACTIVE}, L{STANDBY}), and the refusal a
standby answers a hello with, which names the active master so that the
peer goes there next (L{standbyRefusal}, L{activeHostIn}).

The refusal is a L{HelloRejected} with the code L{STANDBY_CODE}:

    Error 3064 - Master master2 is a standby: the active master is master1 at 10.0.0.1
    Error 3064 - Master master2 is a standby and no master is active at the moment

Pure: values and texts.
"""

import re

from attrs import frozen

from wazuhcluster.commands import HelloRejected
from wazuhcluster.health import isoDate

ACTIVE = "active"
STANDBY = "standby"

#: The code of a standby's refusal of a hello.
STANDBY_CODE = 3064

#: The code of a switchover that cannot be done.
SWITCHOVER_CODE = 3065

_ACTIVE_AT = re.compile(r"\AError 3064 - .* the active master is (\S+) at (\S+)\Z")


@frozen
class ActiveMaster:
    """
    The master holding the lock, as it recorded itself in the database.

    @ivar name: its node name.
    @ivar host: the address of C{<nodes>} its certificate names (where
        workers reach it).
    @ivar since: when it took the lock (POSIX time, the database's clock).
    """

    name: str
    host: str
    since: float

    def asJson(self):
        """
        C{{"name", "ip", "since"}} for the control answers.
        """
        return {"name": self.name, "ip": self.host, "since": isoDate(self.since)}


def standbyRefusal(nodeName, active):
    """
    The refusal of a hello by the standby C{nodeName}.

    @param active: the L{ActiveMaster} it knows of, or L{None}.
    @rtype: L{HelloRejected}
    """
    if active is None or active.name == nodeName:
        return HelloRejected(f"Error {STANDBY_CODE} - Master {nodeName} is a standby and "
                             "no master is active at the moment")
    return HelloRejected(f"Error {STANDBY_CODE} - Master {nodeName} is a standby: the "
                         f"active master is {active.name} at {active.host}")


def activeHostIn(text):
    """
    The address of the active master a standby's refusal names, or L{None}
    (another refusal, or one naming no active master).
    """
    match = _ACTIVE_AT.match(text)
    return match.group(2) if match else None

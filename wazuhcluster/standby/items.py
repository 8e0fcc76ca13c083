# -*- test-case-name: tests.test_standby_items -*-
"""
The C{masters} section of cluster.json: how the active master proves it
still holds the PostgreSQL lock, and how standbys wait for it.

    "masters": {"lock_check_interval": 2, "lock_check_timeout": 3,
                "lock_poll_interval": 2, "switchover_grace": 15}

  - C{lock_check_interval}: seconds between two checks of the lock by the
    active master (a period);
  - C{lock_check_timeout}: seconds a check (or a standby's poll) may take;
    one that takes longer counts as the lock lost (a limit);
  - C{lock_poll_interval}: seconds between two attempts of a standby to
    take the lock (a period);
  - C{switchover_grace}: seconds during which, after a switchover, only the
    named standby may take the lock (a limit).

The window during which two masters may both believe they are active
follows from these values (L{overlapWindow}); the keep-alive settings the
lock session asks of the PostgreSQL server follow from it too
(L{serverKeepalives}), so that a silent network cut frees the lock only
after the cut-off master stopped serving.  See L{wazuhcluster.standby}.

Pure: validation and arithmetic, no I/O.
"""

import math

import attrs
from attrs import field, frozen

#: The kinds of values of the section (as in L{wazuhcluster.intervals}).
PERIOD = "period"
LIMIT = "limit"

#: Keep-alive probes the server sends before it gives a silent lock
#: session up.
SERVER_KEEPALIVE_COUNT = 3


def _kind(kind):
    return field(metadata={"kind": kind})


@frozen
class MastersItems:
    """
    The validated C{masters} section (the shipped defaults by default).
    """

    lock_check_interval: float = _kind(PERIOD)
    lock_check_timeout: float = _kind(LIMIT)
    lock_poll_interval: float = _kind(PERIOD)
    switchover_grace: float = _kind(LIMIT)


#: The shipped values (the same as C{wazuhcluster/cluster.json}).
DEFAULT_MASTERS = MastersItems(
    lock_check_interval=2, lock_check_timeout=3, lock_poll_interval=2, switchover_grace=15)


def buildMasters(section, error):
    """
    Validate the merged C{masters} section.

    @param section: the merged JSON object (every key present).
    @param error: makes the L{wazuhcluster.errors.ConfigError} of a text
        (naming the file).
    @rtype: L{MastersItems}
    """
    values = {}
    for spec in attrs.fields(MastersItems):
        value = section[spec.name]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise error(f"Interval 'masters.{spec.name}' must be a number, found {value!r}")
        if value <= 0:
            raise error(f"Interval 'masters.{spec.name}' is a {spec.metadata['kind']} and "
                        f"must be a positive number, found {value!r}")
        values[spec.name] = value
    return MastersItems(**values)


def overlapWindow(masters):
    """
    The longest time, in seconds, during which two masters may both believe
    they are active: the active master's last successful check may be
    followed by C{lock_check_interval} seconds before the next one starts,
    and that one by C{lock_check_timeout} seconds before it counts as
    failed, at which point the master stops serving at once.

    @type masters: L{MastersItems}
    """
    return masters.lock_check_interval + masters.lock_check_timeout


def serverKeepalives(masters):
    """
    The TCP keep-alive settings the lock session asks of the PostgreSQL
    server (C{tcp_keepalives_idle}, C{tcp_keepalives_interval},
    C{tcp_keepalives_count}, in seconds): the server gives a silent session
    up, and frees its lock, only after C{idle + interval * count} seconds
    without a word from the master, which is more than L{overlapWindow}: a
    master cut off from the server has stopped serving before any standby
    can take the lock.

    @type masters: L{MastersItems}
    @return: C{(idle, interval, count)}, whole seconds.
    """
    idle = max(1, math.ceil(overlapWindow(masters)))
    interval = max(1, math.ceil(masters.lock_check_interval))
    return idle, interval, SERVER_KEEPALIVE_COUNT


def serverRelease(masters):
    """
    Seconds after which the PostgreSQL server frees the lock of a master it
    no longer hears from (a silent network cut): see L{serverKeepalives}.
    """
    idle, interval, count = serverKeepalives(masters)
    return idle + interval * count


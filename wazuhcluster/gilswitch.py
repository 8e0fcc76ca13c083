# -*- test-case-name: tests.test_gilswitch -*-
"""
How soon a node's threads hand the interpreter over to one another.

A thread that gives up the GIL for a blocking call (every C{sqlite3_step},
every read or hash of a synced file) must take it back before it goes on;
while the reactor thread is busy it gets it back only when the reactor
thread is made to let go, every C{sys.getswitchinterval()} (5 ms by
default), and the other way round the reactor thread waits as long for a
thread that hashes or packs.  Measured beside a thread that never blocks:
320 SQLite transactions of 125 single-row updates took 10.1 s with the
default interval instead of 0.05 s alone, 1.6 s with 0.5 ms.
L{shortenSwitchInterval} sets the shorter interval for the whole process;
the cost is more frequent switches between busy threads.
"""

import sys

#: The switch interval of a node, in seconds.
NODE_SWITCH_INTERVAL = 0.0005


def shortenSwitchInterval(interval=NODE_SWITCH_INTERVAL, sys=sys):
    """
    Make the interpreter switch threads at least every C{interval} seconds
    (never lengthen an interval set shorter already).

    @return: the interval now in force.
    """
    if sys.getswitchinterval() > interval:
        sys.setswitchinterval(interval)
    return sys.getswitchinterval()

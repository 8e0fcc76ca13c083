# -*- test-case-name: tests.test_wazuhdb_client -*-
"""
Failure knobs of the stand-ins: make the next requests that start with
some text slow, or drop their connection, as a misbehaving wazuh-db or
authd would.
"""

from attrs import define


@define
class Rule:
    """
    What to do with the next C{times} requests starting with C{prefix}.

    @ivar action: C{"slow"} (answer after C{seconds}), C{"drop"} (close
        the connection without answering; the request was carried out) or
        C{"fail"} (answer C{err <message>}; nothing was done).
    """

    prefix: str
    action: str
    seconds: float = 0.0
    times: int = 1
    message: str = ""


class Knobs:
    """
    The rules of one stand-in, taken in order.
    """

    def __init__(self):
        self.rules = []

    def slow(self, prefix, seconds, times=1):
        """
        Answer the next C{times} requests starting with C{prefix} after
        C{seconds}.
        """
        self.rules.append(Rule(prefix, "slow", seconds, times))

    def drop(self, prefix, times=1):
        """
        Close the connection of the next C{times} requests starting with
        C{prefix}, after carrying them out, without answering.
        """
        self.rules.append(Rule(prefix, "drop", 0.0, times))

    def fail(self, prefix, message, times=1):
        """
        Answer the next C{times} requests starting with C{prefix} with
        C{err <message>}, without carrying them out.
        """
        self.rules.append(Rule(prefix, "fail", 0.0, times, message))

    def take(self, request):
        """
        The rule for C{request}, if any (used up by one).
        """
        for rule in self.rules:
            if request.startswith(rule.prefix):
                rule.times -= 1
                if rule.times <= 0:
                    self.rules.remove(rule)
                return rule
        return None

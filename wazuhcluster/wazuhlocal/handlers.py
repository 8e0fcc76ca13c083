# -*- test-case-name: tests.test_wazuhlocal_protocol -*-
"""
What a connection of Wazuh's local socket does with the requests it does not
answer itself (L{ILocalHandler}), and the handler that dispatches them by
command name (L{CommandTable}).
"""

from zope.interface import Interface, implementer

from wazuhcluster.errors import ClusterError


class UnknownCommand(ClusterError):
    """
    A request names a command this side does not answer.
    """

    code = 3000

    def __init__(self, command):
        super().__init__(f"unknown command '{command!r}'", 3000)
        self.command = command


class ILocalHandler(Interface):
    """
    What a connection does with the requests it does not answer itself.
    """

    def connectionMade(protocol):
        """
        The connection C{protocol} is up.
        """

    def requestReceived(protocol, command, payload):
        """
        Answer a request (a new counter) of the peer.

        @type command: L{bytes}
        @type payload: L{bytes}
        @return: C{(command, payload)} to reply (C{(b"ok", b"...")}),
            L{None} to send no reply, or a Deferred of either.
        @raise UnknownCommand: for a command it does not answer.
        @raise ClusterError: to reply C{err} with it; any other exception
            replies Wazuh's internal error 1000.
        """

    def connectionLost(protocol, reason):
        """
        The connection C{protocol} is gone.
        """


@implementer(ILocalHandler)
class CommandTable:
    """
    An L{ILocalHandler} dispatching by command name.

    @ivar commands: C{{b"get_nodes": f(protocol, payload)}}.
    """

    def __init__(self, commands=None):
        self.commands = dict(commands or {})

    def connectionMade(self, protocol):
        pass

    def requestReceived(self, protocol, command, payload):
        try:
            function = self.commands[command]
        except KeyError:
            raise UnknownCommand(command) from None
        return function(protocol, payload)

    def connectionLost(self, protocol, reason):
        pass

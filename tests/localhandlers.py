"""
A local-server handler for tests of the clients of the local socket: it
answers every command with the answer of a control handler
(C{answer(request, arguments)}), as a node answers its own requests.
"""

import json

from twisted.internet.defer import maybeDeferred

from wazuhcluster.localserver.base import OWN_REQUESTS, failWith
from wazuhcluster.wazuhlocal.handlers import CommandTable


class RequestsHandler(CommandTable):
    """
    Answers C{<command> <json arguments>} with C{control.answer(request,
    arguments)} (the request of the command, L{OWN_REQUESTS}, or the
    command itself): C{ok} and its JSON, or C{err}.
    """

    def __init__(self, control):
        super().__init__()
        self.control = control

    def requestReceived(self, protocol, command, payload):
        arguments = json.loads(payload or b"{}")
        request = OWN_REQUESTS.get(command, command.decode("ascii"))
        d = maybeDeferred(self.control.answer, request, arguments)
        d.addErrback(failWith)
        return d.addCallback(lambda value: (b"ok", value if isinstance(value, bytes)
                                            else json.dumps(value).encode()))


def serving(handler):
    """
    The handler factory of a server answering with C{handler}'s C{answer}.
    """
    return lambda: RequestsHandler(handler)

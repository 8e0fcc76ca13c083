# -*- test-case-name: tests.test_standins -*-
"""
A wazuh-db stand-in: the classic socket C{queue/db/wdb} (4-byte
little-endian length + UTF-8 text) and the HTTP API on
C{queue/sockets/wdb-http.sock}, answering as wazuh-db 4.14.7 answered
(C{/work/shared/wazuh-peers/wazuh-db-4.14.7-session.txt}).

In-process::

    standin = WazuhDBStandIn(clock=clock)
    standin.classicFactory(), standin.httpFactory()   # for any endpoint
    yield standin.listen(reactor, home)               # real UNIX sockets

As a process (end-to-end tests)::

    python -m tests.standins.wazuhdb --home H [--max-response BYTES]

which listens on C{H/queue/db/wdb} and C{H/queue/sockets/wdb-http.sock},
keeps its database in C{H/queue/db/wazuhdb-standin.db}, prints
C{wazuh-db stand-in ready} and runs until SIGTERM.

Requests on one classic connection are answered one after the other, in
order, as wazuh-db does. See L{tests.standins} for what is modelled.
"""

import os
import sys

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import IntNStringReceiver
from twisted.web.server import Site

from tests.standins.knobs import Knobs
from tests.standins.wdbhttp import WazuhDBHTTP, WazuhDBResource
from tests.standins.wdbmodel import MAX_RESPONSE, WazuhDBModel

#: Longest request wazuh-db reads (OS_MAXSTR).
MAX_REQUEST = 65536

WDB_SOCKET = "queue/db/wdb"
WDB_HTTP_SOCKET = "queue/sockets/wdb-http.sock"
DATABASE = "queue/db/wazuhdb-standin.db"


class WazuhDBServerProtocol(IntNStringReceiver):
    """
    One connection of the classic socket.
    """

    structFormat = "<I"
    prefixLength = 4
    MAX_LENGTH = MAX_REQUEST

    def __init__(self, standin):
        self.standin = standin
        self._queue = []
        self._busy = False
        self._delayed = None

    def connectionMade(self):
        self.standin.connections.add(self)

    def connectionLost(self, reason):
        self.standin.connections.discard(self)
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()

    def stringReceived(self, data):
        self._queue.append(data.decode("utf-8", "replace"))
        self._next()

    def _next(self):
        while self._queue and not self._busy and self.transport is not None:
            text = self._queue.pop(0)
            self.standin.requests.append(text)
            rule = self.standin.knobs.take(text)
            if rule is not None and rule.action == "fail":
                answer = f"err {rule.message}"
            else:
                answer = self.standin.model.execute(text)
            if rule is not None and rule.action == "drop":
                self._queue.clear()
                self.transport.abortConnection()
                return
            if rule is not None and rule.action == "slow":
                self._busy = True
                self._delayed = self.standin.clock.callLater(rule.seconds, self._answer, answer)
                return
            self.sendString(answer.encode("utf-8"))

    def _answer(self, answer):
        self._busy = False
        self._delayed = None
        if self.connected:
            self.sendString(answer.encode("utf-8"))
            self._next()


class WazuhDBStandIn:
    """
    The stand-in: one model, a classic server and an HTTP server.

    @ivar model: the L{WazuhDBModel}.
    @ivar knobs: the L{Knobs} of both servers (HTTP requests are named
        C{"GET /v1/agents/sync"}).
    @ivar requests: every request received, in order.
    """

    def __init__(self, home=None, clock=None, maxResponse=MAX_RESPONSE):
        """
        @param home: a directory whose C{queue/db/wazuhdb-standin.db} keeps
            the state; in memory when L{None}.
        @param clock: the reactor or L{twisted.internet.task.Clock} for
            delayed answers and the database's notion of now.
        """
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        path = ":memory:"
        if home is not None:
            os.makedirs(os.path.join(home, "queue", "db"), exist_ok=True)
            path = os.path.join(home, DATABASE)
        self.model = WazuhDBModel(path, clock=clock.seconds, maxResponse=maxResponse)
        self.http = WazuhDBHTTP(self.model)
        self.knobs = Knobs()
        self.requests = []
        self.connections = set()
        self._ports = []

    def classicFactory(self):
        """
        A factory of classic-socket connections.
        """
        return Factory.forProtocol(lambda: WazuhDBServerProtocol(self))

    def _gate(self, method, path, request):
        self.requests.append(f"{method} {path}")
        rule = self.knobs.take(f"{method} {path}")
        if rule is None:
            return None
        if rule.action == "drop":
            request.channel.transport.abortConnection()
            return Deferred()
        d = Deferred()
        self.clock.callLater(rule.seconds, d.callback, None)
        return d

    def httpFactory(self):
        """
        A twisted.web site serving the HTTP API.
        """
        site = Site(WazuhDBResource(self.http, self._gate))
        site.displayTracebacks = False
        return site

    def listen(self, reactor, home):
        """
        Listen on C{home}'s C{queue/db/wdb} and
        C{queue/sockets/wdb-http.sock} (mode 0660), removing stale sockets.

        @return: a Deferred firing when both listen.
        """
        listening = []
        for relpath, factory in ((WDB_SOCKET, self.classicFactory()),
                                 (WDB_HTTP_SOCKET, self.httpFactory())):
            path = os.path.join(home, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)
            endpoint = UNIXServerEndpoint(reactor, path, mode=0o660)
            listening.append(endpoint.listen(factory).addCallback(self._ports.append))
        return gatherResults(listening, consumeErrors=True)

    def dropConnections(self):
        """
        Close every classic connection, as a wazuh-db restart does.
        """
        for protocol in list(self.connections):
            protocol.transport.abortConnection()

    def stop(self):
        """
        Stop listening (the state is kept: L{listen} again to restart).

        @return: a Deferred firing when done.
        """
        d = gatherResults([port.stopListening() for port in self._ports], consumeErrors=True)
        self._ports = []
        return d


def main(argv=None):
    """
    Run the stand-in as a process.
    """
    import argparse

    from twisted.internet import reactor

    parser = argparse.ArgumentParser(prog="python -m tests.standins.wazuhdb")
    parser.add_argument("--home", required=True)
    parser.add_argument("--max-response", type=int, default=MAX_RESPONSE)
    options = parser.parse_args(argv)
    home = os.path.abspath(options.home)
    standin = WazuhDBStandIn(home, reactor, options.max_response)

    def ready(_):
        print("wazuh-db stand-in ready", flush=True)

    def failed(failure):
        print(f"wazuh-db stand-in: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    standin.listen(reactor, home).addCallbacks(ready, failed)
    reactor.run()  # stops on SIGTERM and SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())

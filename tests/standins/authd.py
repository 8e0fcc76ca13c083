# -*- test-case-name: tests.test_standins -*-
"""
An authd stand-in: the local socket C{queue/sockets/auth} of a master's
wazuh-authd (one request per connection, 4-byte little-endian length +
JSON, then authd closes), answering as wazuh-authd 4.14.7 answered
(C{/work/shared/wazuh-peers/wazuh-authd-4.14.7-session.txt}).

Like authd, it picks new IDs from C{etc/client.keys} (one more than the
highest ID there, removed entries included), not from wazuh-db; it writes
C{client.keys} and inserts the agent into wazuh-db (C{global insert-agent},
then C{global set-agent-groups} when groups were given), ignoring
wazuh-db's errors as authd does: when wazuh-db already holds the ID, the
two disagree (the recorded quirk).

In-process: C{AuthdStandIn(home, wdb=model.execute)}. As a process::

    python -m tests.standins.authd --home H

listening on C{H/queue/sockets/auth} and reaching wazuh-db on
C{H/queue/db/wdb}; prints C{authd stand-in ready}.
"""

import json
import os
import secrets
import socket
import sys

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import (
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import Factory
from twisted.protocols.basic import IntNStringReceiver

AUTH_SOCKET = "queue/sockets/auth"

#: wazuh-authd's error codes and texts (4.14).
ERRORS = {
    "EINTERNAL": (9001, "Internal error"),
    "EJSON": (9002, "Parsing JSON input"),
    "ENOFUNCTION": (9003, "No such function"),
    "ENOARGUMENT": (9004, "No such argument"),
    "ENONAME": (9005, "No such name"),
    "ENOIP": (9006, "No such IP"),
    "EDUPIP": (9007, "Duplicate IP"),
    "EDUPNAME": (9008, "Duplicate name"),
    "ENOID": (9010, "No such agent ID"),
    "ENOAGENT": (9011, "Agent ID not found"),
    "EDUPID": (9012, "Duplicate ID"),
    "EINVGROUP": (9014, "Invalid Group(s) Name(s)"),
    "EINVALIDNAME": (9017, "Invalid agent name"),
}


class AuthdError(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.code, self.text = ERRORS[name]


def _compact(value):
    return json.dumps(value, separators=(",", ":"))


class AuthdModel:
    """
    authd's C{add}, C{remove} and C{get} on C{client.keys} and wazuh-db.

    @ivar wdbErrors: wazuh-db answers other than C{ok} (authd logs them).
    """

    def __init__(self, home, wdb, clock, managerName=None):
        """
        @param wdb: a callable sending one wazuh-db command, returning the
            answer (or a Deferred of it).
        """
        self.home = home
        self.keysPath = os.path.join(home, "etc", "client.keys")
        self.wdb = wdb
        self.clock = clock
        self.managerName = socket.gethostname() if managerName is None else managerName
        self.wdbErrors = []

    def _lines(self):
        try:
            with open(self.keysPath, encoding="utf-8") as f:
                return [line.split() for line in f if len(line.split()) == 4]
        except FileNotFoundError:
            return []

    def _write(self, lines):
        os.makedirs(os.path.dirname(self.keysPath), exist_ok=True)
        tmp = self.keysPath + ".standin.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(" ".join(fields) + "\n" for fields in lines)
        os.chmod(tmp, 0o640)
        os.replace(tmp, self.keysPath)

    def dispatch(self, text):
        """
        Answer one request.

        @type text: L{str}
        @return: a Deferred firing with the answer (L{str}).
        """
        try:
            if not text.startswith("{"):
                raise AuthdError("EJSON")
            try:
                request = json.loads(text)
            except ValueError:
                raise AuthdError("EJSON") from None
            function = request.get("function") if isinstance(request, dict) else None
            if not isinstance(function, str):
                raise AuthdError("ENOFUNCTION")
            arguments = request.get("arguments")
            if function not in ("add", "remove", "get"):
                raise AuthdError("ENOFUNCTION")
            if not isinstance(arguments, dict):
                raise AuthdError("ENOARGUMENT")
            d = getattr(self, function)(arguments)
        except AuthdError as e:
            return succeed(_compact({"error": e.code, "message": e.text}))
        return d.addCallback(_compact)

    def _active(self, lines):
        return [f for f in lines if not f[0].startswith("#") and not f[1].startswith("!")]

    def add(self, arguments):
        name, ip = arguments.get("name"), arguments.get("ip")
        if "name" not in arguments:
            raise AuthdError("ENONAME")
        if not isinstance(name, str) or not name or len(name) > 128 or name[0] in "#!" or any(
                c <= " " or c == "\x7f" for c in name):
            raise AuthdError("EINVALIDNAME")
        if not isinstance(ip, str):
            raise AuthdError("ENOIP")
        for key in ("id", "key", "key_hash"):
            if arguments.get(key) is not None and not isinstance(arguments[key], str):
                raise AuthdError("EJSON")
        groups = arguments.get("groups")
        if groups is not None:
            if not isinstance(groups, str):
                raise AuthdError("EINVGROUP")
            groups = list(dict.fromkeys(g for g in groups.split(",") if g))
            shared = os.path.join(self.home, "etc", "shared")
            if not groups or any(not os.path.isdir(os.path.join(shared, g)) or "/" in g
                                 or g in (".", "..") for g in groups):
                raise AuthdError("EINVGROUP")
        lines = self._lines()
        active = self._active(lines)
        agentId = arguments.get("id")
        if agentId is not None and not agentId.isdigit():
            raise AuthdError("EJSON")
        if agentId is not None and any(f[0].isdigit() and int(f[0]) == int(agentId)
                                       for f in active):
            raise AuthdError("EDUPID")
        if ip != "any" and any(f[2] == ip for f in active):
            raise AuthdError("EDUPIP")
        if name == self.managerName or any(f[1] == name for f in active):
            raise AuthdError("EDUPNAME")
        if agentId is None:
            highest = max((int(f[0].lstrip("#")) for f in lines if f[0].lstrip("#").isdigit()),
                          default=0)
            agentId = f"{highest + 1:03d}"
        key = arguments.get("key") or secrets.token_hex(32)
        self._write(lines + [[agentId, name, ip, key]])
        row = {"id": int(agentId), "name": name, "register_ip": ip, "internal_key": key,
               "date_add": int(self.clock.seconds())}
        if groups:
            row["group"] = ",".join(groups)
        d = self._wdb("global insert-agent " + _compact(row))
        if groups:
            setGroups = {"mode": "override", "sync_status": "syncreq",
                         "data": [{"id": int(agentId), "groups": groups}]}
            # Only for a row this insert made: never another agent's.
            d.addCallback(lambda inserted: inserted and self._wdb(
                "global set-agent-groups " + _compact(setGroups)))
        return d.addCallback(lambda _: {"error": 0, "data": {
            "id": agentId, "name": name, "ip": ip, "key": key}})

    def remove(self, arguments):
        agentId = arguments.get("id")
        if not isinstance(agentId, str):
            raise AuthdError("ENOID")
        lines = self._lines()
        found = [f for f in self._active(lines) if f[0] == agentId]
        if not found:
            raise AuthdError("ENOAGENT")
        if arguments.get("purge") is True:
            lines = [f for f in lines if f is not found[0]]
        else:
            found[0][1] = "!" + found[0][1]
        self._write(lines)
        d = self._wdb(f"global delete-agent {int(agentId)}")
        return d.addCallback(lambda _: {"error": 0, "data": "Agent deleted successfully."})

    def get(self, arguments):
        agentId = arguments.get("id")
        if not isinstance(agentId, str):
            raise AuthdError("ENOID")
        found = [f for f in self._active(self._lines()) if f[0] == agentId]
        if not found:
            raise AuthdError("ENOAGENT")
        agentId, name, ip, key = found[0]
        return succeed({"error": 0, "data": {"id": agentId, "name": name, "ip": ip, "key": key}})

    def _wdb(self, command):
        def checked(answer):
            if answer != "ok":
                self.wdbErrors.append((command, answer))
            return answer == "ok"

        def failed(failure):
            self.wdbErrors.append((command, failure.getErrorMessage()))
            return False

        return maybeDeferred(self.wdb, command).addCallbacks(checked, failed)


class AuthdServerProtocol(IntNStringReceiver):
    """
    One request, one answer, then authd closes.
    """

    structFormat = "<I"
    prefixLength = 4
    MAX_LENGTH = 65536

    def __init__(self, standin):
        self.standin = standin
        self._answered = False
        self._delayed = None

    def connectionLost(self, reason):
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()

    def stringReceived(self, data):
        if self._answered:
            return
        self._answered = True
        text = data.decode("utf-8", "replace")
        self.standin.requests.append(text)
        rule = self.standin.knobs.take(text)
        d = self.standin.model.dispatch(text)

        def send(text):
            if self.connected:
                self.sendString(text.encode("utf-8"))
                self.transport.loseConnection()

        def answer(text):
            if rule is None:
                send(text)
            elif rule.action == "drop":
                self.transport.abortConnection()
            else:
                self._delayed = self.standin.clock.callLater(rule.seconds, send, text)

        d.addCallback(answer)


class _WdbOnce(IntNStringReceiver):
    structFormat = "<I"
    prefixLength = 4
    MAX_LENGTH = 1024 * 1024

    def __init__(self, command):
        self.command = command
        self.answer = Deferred()

    def connectionMade(self):
        self.sendString(self.command.encode("utf-8"))

    def stringReceived(self, data):
        self.transport.loseConnection()
        if not self.answer.called:
            self.answer.callback(data.decode("utf-8", "replace"))

    def connectionLost(self, reason):
        if not self.answer.called:
            self.answer.errback(reason)


def socketWdb(reactor, path):
    """
    A wazuh-db caller over the classic socket at C{path}: one connection
    per command.
    """
    def send(command):
        protocol = _WdbOnce(command)
        d = connectProtocol(UNIXClientEndpoint(reactor, path), protocol)
        return d.addCallback(lambda _: protocol.answer)

    return send


class AuthdStandIn:
    """
    The stand-in: a model and its server.

    @ivar requests: every request received, in order.
    """

    def __init__(self, home, wdb, clock=None, managerName=None):
        if clock is None:
            from twisted.internet import reactor as clock
        from tests.standins.knobs import Knobs

        self.clock = clock
        self.model = AuthdModel(home, wdb, clock, managerName)
        self.knobs = Knobs()
        self.requests = []
        self._port = None

    def factory(self):
        return Factory.forProtocol(lambda: AuthdServerProtocol(self))

    def listen(self, reactor, home):
        path = os.path.join(home, AUTH_SOCKET)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        d = UNIXServerEndpoint(reactor, path, mode=0o660).listen(self.factory())
        return d.addCallback(lambda port: setattr(self, "_port", port))

    def stop(self):
        port, self._port = self._port, None
        return succeed(None) if port is None else port.stopListening()


def main(argv=None):
    """
    Run the stand-in as a process.
    """
    import argparse

    from twisted.internet import reactor

    parser = argparse.ArgumentParser(prog="python -m tests.standins.authd")
    parser.add_argument("--home", required=True)
    parser.add_argument("--manager-name", default=None)
    options = parser.parse_args(argv)
    home = os.path.abspath(options.home)
    wdb = socketWdb(reactor, os.path.join(home, "queue", "db", "wdb"))
    standin = AuthdStandIn(home, wdb, reactor, options.manager_name)

    def ready(_):
        print("authd stand-in ready", flush=True)

    def failed(failure):
        print(f"authd stand-in: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    standin.listen(reactor, home).addCallbacks(ready, failed)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

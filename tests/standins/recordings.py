# -*- test-case-name: tests.test_standins -*-
"""
The recorded sessions of wazuh-db and wazuh-authd 4.14.7 (copies of
C{/work/shared/wazuh-peers/*-session.txt}), parsed into exchanges.

Lines C{>> REQUEST} are followed by C{<< ANSWER}; C{HTTP METHOD PATH} by
C{<< (STATUS, 'BODY')}. The recorder cut long requests short: L{truncated}
tells them apart (their JSON does not parse), and tests complete them.
"""

import ast
import json
import os

from attrs import frozen

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recordings")
WAZUH_DB_SESSION = os.path.join(HERE, "wazuh-db-4.14.7-session.txt")
AUTHD_SESSION = os.path.join(HERE, "wazuh-authd-4.14.7-session.txt")


@frozen
class Exchange:
    """
    One recorded request and its answer.

    @ivar kind: C{"wdb"} (classic socket), C{"http"} or C{"auth"}.
    @ivar request: the request text (C{"GET /v1/agents/ids"} for HTTP).
    @ivar answer: the answer text, or C{(status, body)} for HTTP.
    """

    kind: str
    request: str
    answer: object

    @property
    def truncated(self):
        """
        Whether the recorder cut the request short.
        """
        if self.kind == "http":
            return False
        start = self.request.find("{") if self.kind == "auth" else _jsonStart(self.request)
        if start < 0:
            return False
        try:
            json.loads(self.request[start:])
        except ValueError:
            return True
        return False


def _jsonStart(text):
    positions = [p for p in (text.find("{"), text.find("[")) if p >= 0]
    return min(positions) if positions else -1


def parseSession(path):
    """
    The exchanges of a session file, in order, and the lines of the
    C{client.keys:} section if it has one.

    @return: C{(exchanges, clientKeysLines)}.
    """
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    exchanges, keys = [], []
    request = None
    inKeys = False
    for line in lines:
        if inKeys:
            if line.strip():
                keys.append(line)
            continue
        if line == "client.keys:":
            inKeys = True
        elif line.startswith(">> auth "):
            request = ("auth", line[len(">> auth "):])
        elif line.startswith(">> "):
            request = ("wdb", line[3:])
        elif line.startswith("HTTP "):
            request = ("http", line[5:])
        elif line.startswith("<< ") or line == "<<":
            kind, text = request
            answer = line[3:]
            if kind == "http":
                answer = ast.literal_eval(answer)
            exchanges.append(Exchange(kind, text, answer))
            request = None
    return exchanges, keys

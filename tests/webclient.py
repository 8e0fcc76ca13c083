"""
A small HTTP client for the web service's tests (twisted.web's C{Agent},
no persistent connections), and a real-reactor pump for in-memory
clusters whose web service answers on a real port.
"""

import base64
import json

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers


@inlineCallbacks
def fetch(url, method=b"GET", headers=None, agent=None):
    """
    @return: a Deferred of C{(status, headers, body)}.
    """
    if agent is None:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = yield agent.request(method, url.encode("ascii"), Headers(headers or {}))
    body = yield readBody(response)
    return response.code, response.headers, body


@inlineCallbacks
def fetchJson(url, **kwargs):
    """
    @return: a Deferred of C{(status, parsed JSON body)}; fails unless the
        answer is JSON.
    """
    status, headers, body = yield fetch(url, **kwargs)
    contentType = headers.getRawHeaders(b"content-type", [b""])[0]
    if not contentType.startswith(b"application/json"):
        raise AssertionError(f"{url}: not JSON ({contentType!r}): {body[:300]!r}")
    return status, json.loads(body)


def basicAuth(user, password):
    token = base64.b64encode(f"{user}:{password}".encode("utf-8"))
    return {b"authorization": [b"Basic " + token]}


def pumpInMemory(testCase, cluster, interval=0.005):
    """
    Move the bytes of an in-memory cluster from the real reactor while the
    test runs (a request to a worker's web service forwards over its
    in-memory connection).
    """
    loop = LoopingCall(cluster.network.flush)
    loop.clock = reactor
    loop.start(interval)
    testCase.addCleanup(lambda: loop.running and loop.stop())

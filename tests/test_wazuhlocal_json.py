"""
Tests for L{wazuhcluster.wazuhlocal.wazuhjson}: Wazuh's JSON encodings, and
their defensive decoding.
"""

import json
import sys
from datetime import datetime, timezone

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.errors import ClusterError
from wazuhcluster.wazuhlocal.wazuhjson import (
    DapiFunction,
    MalformedJSON,
    UnhandledException,
    WazuhRemoteError,
    WazuhResult,
    decodeDapiRequest,
    decodeError,
    dumps,
    encodeError,
    loads,
)

#: The DAPI request of C{cluster_control -a} (wazuh-peers/README.md).
AGENTS_REQUEST = (
    b'{"f":{"__callable__":{"__name__":"get_agents_overview","__module__":"wazuh.core.agent",'
    b'"__qualname__":"Agent.get_agents_overview","__type__":"function"}},'
    b'"f_kwargs":{"filters":{"status":"all","node_name":"all"},"limit":null,'
    b'"select":["id","ip","name","status","node_name","version"]},'
    b'"from_cluster":false,"wait_for_complete":false}'
)


class ErrorEncodingTests(SynchronousTestCase):
    """
    The payload of C{err} replies.
    """

    def test_recordedForm(self):
        """
        An error is encoded exactly in the recorded form, Wazuh's own text of
        the code left out of C{extra_message}.
        """
        payload = encodeError(ClusterError("Timeout sending request: echo-c", 3020))
        self.assertEqual(
            payload,
            b'{"__wazuh_exception__":{"__class__":"WazuhClusterError",'
            b'"__object__":{"code":3020,"extra_message":"echo-c"}}}',
        )

    def test_messageWithoutWazuhText(self):
        """
        A message that does not start with Wazuh's text of its code travels
        whole as C{extra_message}; Wazuh's bare text travels as L{None}.
        """
        self.assertEqual(
            json.loads(encodeError(ClusterError("Worker node is not connected to master", 3023))),
            {"__wazuh_exception__": {"__class__": "WazuhClusterError",
                                     "__object__": {"code": 3023, "extra_message": None}}},
        )
        value = json.loads(encodeError(ClusterError("no such thing", 1701)))
        self.assertEqual(value["__wazuh_exception__"]["__class__"], "WazuhError")
        self.assertEqual(value["__wazuh_exception__"]["__object__"]["extra_message"], "no such thing")

    def test_otherException(self):
        """
        An exception that is no L{ClusterError} is Wazuh's internal error 1000.
        """
        value = json.loads(encodeError(KeyError("x")))
        self.assertEqual(value["__wazuh_exception__"]["__class__"], "WazuhInternalError")
        self.assertEqual(value["__wazuh_exception__"]["__object__"]["code"], 1000)

    def test_decodeRecorded(self):
        """
        The recorded form decodes to an error printing as Wazuh prints it.
        """
        error = decodeError(
            b'{"__wazuh_exception__":{"__class__":"WazuhClusterError",'
            b'"__object__":{"code":3020,"extra_message":"echo-c"}}}'
        )
        self.assertIsInstance(error, WazuhRemoteError)
        self.assertEqual((error.code, error.className, error.extraMessage),
                         (3020, "WazuhClusterError", "echo-c"))
        self.assertEqual(str(error), "Error 3020 - Timeout sending request: echo-c")

    def test_decodeFullObject(self):
        """
        Wazuh's own C{to_dict} (every key, default separators) decodes too.
        """
        payload = json.dumps({"__wazuh_exception__": {"__class__": "WazuhClusterError",
            "__object__": {"type": "about:blank", "title": "WazuhClusterError", "code": 3022,
                           "extra_message": None, "extra_remediation": None,
                           "cmd_error": False, "dapi_errors": {}}}}).encode()
        error = decodeError(payload)
        self.assertEqual(str(error), "Error 3022 - Unknown node ID")

    def test_decodePlainText(self):
        """
        Wazuh answers unknown commands with plain text; it becomes error
        3000 with the text, as Wazuh's clients make it.
        """
        error = decodeError(b"unknown command 'b'bogus''")
        self.assertEqual(error.code, 3000)
        self.assertEqual(error.extraMessage, "unknown command 'b'bogus''")

    def test_roundTrip(self):
        """
        Decoding an encoded L{WazuhRemoteError} gives the same fields.
        """
        original = WazuhRemoteError(3009, "agents", "WazuhClusterError")
        decoded = decodeError(encodeError(original))
        self.assertEqual((decoded.code, decoded.extraMessage, decoded.className, decoded.message),
                         (3009, "agents", "WazuhClusterError",
                          "Error executing distributed API request: agents"))


class DapiTests(SynchronousTestCase):
    """
    DAPI requests name functions; decoding never imports them.
    """

    def test_recordedRequest(self):
        """
        The request of C{cluster_control -a} decodes to its function and
        arguments.
        """
        request = decodeDapiRequest(AGENTS_REQUEST)
        self.assertEqual(request.function, DapiFunction(
            "get_agents_overview", "wazuh.core.agent", "Agent.get_agents_overview"))
        self.assertEqual(request.function.dottedName,
                         "wazuh.core.agent.Agent.get_agents_overview")
        self.assertEqual(request.kwargs["filters"], {"status": "all", "node_name": "all"})
        self.assertIsNone(request.kwargs["limit"])
        self.assertFalse(request.fromCluster)
        self.assertFalse(request.waitForComplete)

    def test_encodeCallable(self):
        """
        A L{DapiFunction} encodes as Wazuh's C{__callable__}.
        """
        request = decodeDapiRequest(AGENTS_REQUEST)
        self.assertEqual(json.loads(dumps(request.fields)), json.loads(AGENTS_REQUEST))

    def test_neverImports(self):
        """
        A function in a module nobody imported stays a name: the module is
        still not imported after decoding.
        """
        name = "wazuhcluster_test_never_imported"
        request = decodeDapiRequest(json.dumps({"f": {"__callable__": {
            "__name__": "run", "__module__": name, "__qualname__": "run",
            "__type__": "function"}}, "f_kwargs": {}}).encode())
        self.assertEqual(request.function.module, name)
        self.assertNotIn(name, sys.modules)

    def test_unhandledExceptionNotEvaluated(self):
        """
        Wazuh C{eval}s the class name of an unhandled exception; here it is
        only data.
        """
        value = loads(b'{"__unhandled_exc__":{"__class__":"__import__(\'os\').getcwd",'
                      b'"__args__":["x"]}}')
        self.assertEqual(value, UnhandledException("__import__('os').getcwd", ("x",)))

    def test_notARequest(self):
        """
        A payload without a function is no DAPI request.
        """
        for payload in (b'{"f":"Agent.get_agents_overview"}', b"[]", b'{"f_kwargs":{}}'):
            self.assertRaises(MalformedJSON, decodeDapiRequest, payload)

    def test_invalidFlags(self):
        """
        C{from_cluster} and C{wait_for_complete} must be booleans.
        """
        value = json.loads(AGENTS_REQUEST)
        value["wait_for_complete"] = "yes"
        self.assertRaises(MalformedJSON, decodeDapiRequest, json.dumps(value).encode())


class DefensiveDecodingTests(SynchronousTestCase):
    """
    Untrusted JSON is bounded.
    """

    def test_size(self):
        """
        A text over the size bound is refused before it is parsed.
        """
        self.assertRaises(MalformedJSON, loads, b"[" + b"1," * 100 + b"1]", maxSize=100)

    def test_depth(self):
        """
        Nesting deeper than the bound is refused.
        """
        self.assertEqual(loads(b"[[[1]]]", maxDepth=3), [[[1]]])
        self.assertRaises(MalformedJSON, loads, b"[[[[1]]]]", maxDepth=3)
        self.assertRaises(MalformedJSON, loads, b'{"a":{"b":{"c":{}}}}', maxDepth=3)

    def test_veryDeep(self):
        """
        Nesting deep enough to exhaust the parser's recursion is an error,
        not a crash.
        """
        self.assertRaises(MalformedJSON, loads, b"[" * 100000 + b"]" * 100000)

    def test_notUtf8(self):
        """
        Bytes that are not UTF-8 are refused.
        """
        self.assertRaises(MalformedJSON, loads, b'"\xff"')

    def test_specialWithOtherKeys(self):
        """
        A special form mixed with other keys is malformed.
        """
        self.assertRaises(MalformedJSON, loads,
                          b'{"__wazuh_datetime__":"2026-01-01T00:00:00","x":1}')

    def test_malformedSpecialForms(self):
        """
        Special forms with the wrong shapes are malformed.
        """
        for text in (b'{"__wazuh_exception__":[]}',
                     b'{"__wazuh_exception__":{"__class__":"X","__object__":{"code":"1"}}}',
                     b'{"__callable__":{"__name__":"","__module__":"m","__qualname__":"q"}}',
                     b'{"__wazuh_datetime__":"not a date"}'):
            self.assertRaises(MalformedJSON, loads, text)

    def test_resultsAndDates(self):
        """
        Results and dates round-trip through L{dumps} and L{loads}.
        """
        when = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
        value = {"r": WazuhResult("AffectedItemsWazuhResult", {"affected_items": [1]}), "t": when}
        self.assertEqual(loads(dumps(value)), value)
        self.assertEqual(
            json.loads(dumps(when)), {"__wazuh_datetime__": "2026-11-25T10:00:00+00:00"})

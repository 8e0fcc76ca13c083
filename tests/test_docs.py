# -*- test-case-name: tests.test_docs -*-
"""
Tests for the documentation in C{docs/} and its generator,
C{docs/generate.py}: every ERROR/WARNING line the daemons can log and every
cluster.json key is documented, and the generated parts are current.
"""

import importlib.util
import json
import re

import attrs
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.intervals import SECTIONS

ROOT = FilePath(__file__).parent().parent()
DOCS = ROOT.child("docs")

_spec = importlib.util.spec_from_file_location("docs_generate", DOCS.child("generate.py").path)
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

REGENERATE = "run 'python docs/generate.py' and fill in the texts it lists"


class TroubleshootingTests(SynchronousTestCase):
    """
    C{docs/troubleshooting.md} covers every ERROR and WARNING line.
    """

    def test_everyMessageHasCauseAndFix(self):
        """
        Every message logged at ERROR, WARNING or CRITICAL in
        C{wazuhcluster/} has a cause and a fix in C{docs/log-messages.json}.
        """
        texts = json.loads(DOCS.child("log-messages.json").getContent())
        missing = [message for message in generate.scanMessages()
                   if not (texts.get(message, {}).get("cause")
                           and texts.get(message, {}).get("fix"))]
        self.assertEqual(missing, [], REGENERATE)

    def test_tableIsCurrent(self):
        """
        The table in troubleshooting.md is what the generator makes from the
        code now: every logged message is a row of it.
        """
        parts, _ = generate.render()
        what, table = parts[generate.TROUBLESHOOTING]
        self.assertEqual(generate.generated(generate.TROUBLESHOOTING, what), table, REGENERATE)
        text = DOCS.child("troubleshooting.md").getContent().decode()
        for message in generate.scanMessages():
            self.assertIn(f"`{generate._cell(message)}`", text)

    def test_knownLinesFound(self):
        """
        The scan finds lines of the master, the worker and the plugins, with
        their levels.
        """
        messages = generate.scanMessages()
        self.assertEqual(
            messages["No keep alives have been received from {name} in the last minute. "
                     "Disconnecting"]["level"], "ERROR")
        self.assertEqual(messages["Refused a connection from {host}: {reason}."]["level"],
                         "WARNING")
        self.assertIn("wazuhcluster/tap.py",
                      messages["The cluster is disabled in {home.ossecConf.path}."]["modules"])

    def test_scanner(self):
        """
        The scan takes the format string of C{.error}, C{.warn},
        C{.failure} (with its level) and C{.critical} calls on loggers,
        f-strings included, and of C{refuse}; it skips other C{.error}
        calls and lower levels.
        """
        package = FilePath(self.mktemp())
        package.makedirs()
        package.child("sample.py").setContent(b'''
def f(self, log, ctx, peer):
    self.log.error("Lost {peer}", peer=peer)
    log.withSubtag("Main").warn(f"Slow {peer!r} after {1.5:.1f}s")
    self.syncLog.failure("Round failed", level=LogLevel.error)
    self._log.failure("Loop stopped")
    log.critical("Out of " "space")
    ctx.error("not a logger")
    self.log.info("not an error")
    refuse(home, f"Cannot start {peer}", "wazuh-master")
''')
        found = generate.scanMessages(package.path)
        self.assertEqual({message: entry["level"] for message, entry in found.items()}, {
            "Lost {peer}": "ERROR",
            "Slow {peer!r} after {1.5:.1f}s": "WARNING",
            "Round failed": "ERROR",
            "Loop stopped": "CRITICAL",
            "Out of space": "CRITICAL",
            "Cannot start {peer}": "ERROR",
        })

    def test_regeneratingKeepsTexts(self):
        """
        Regenerating adds a new message with empty texts (listed as missing)
        and keeps every text already written.
        """
        data = FilePath(self.mktemp())
        DOCS.child("log-messages.json").copyTo(data)
        keys = FilePath(self.mktemp())
        DOCS.child("cluster-json-keys.json").copyTo(keys)
        before = json.loads(data.getContent())
        scanned = dict(generate.scanMessages())
        scanned["A brand new line {x}"] = {"level": "ERROR", "modules": ["x.py"]}
        self.patch(generate, "MESSAGES_DATA", data.path)
        self.patch(generate, "KEYS_DATA", keys.path)
        self.patch(generate, "scanMessages", lambda: scanned)
        generate.update()
        after = json.loads(data.getContent())
        self.assertEqual(after["A brand new line {x}"], {"cause": "", "fix": ""})
        for message, text in before.items():
            self.assertEqual(after[message], text)
        _, missing = generate.render()
        self.assertEqual(missing, ["message: A brand new line {x}"])


class ConfigurationTests(SynchronousTestCase):
    """
    C{docs/configuration.md} documents every cluster.json key.
    """

    def test_everyKeyDescribed(self):
        """
        Every key of the shipped cluster.json has a description.
        """
        descriptions = json.loads(DOCS.child("cluster-json-keys.json").getContent())
        missing = [key for key in generate.describedKeys() if not descriptions.get(key)]
        self.assertEqual(missing, [], REGENERATE)

    def test_referenceIsCurrent(self):
        """
        The reference in configuration.md is what the generator makes now,
        and names every interval with its shipped default.
        """
        parts, _ = generate.render()
        what, reference = parts[generate.CONFIGURATION]
        self.assertEqual(generate.generated(generate.CONFIGURATION, what), reference,
                         REGENERATE)
        shipped = json.loads(ROOT.descendant(["wazuhcluster", "cluster.json"]).getContent())
        for section, values in shipped["intervals"].items():
            for key, value in values.items():
                self.assertRegex(reference, re.escape(f"| `{key}` | `{json.dumps(value)}` |"))
        for item in shipped["files"]:
            self.assertIn(f"`{item}`" if item.endswith("/") else f"`files.{item}`", reference)

    def test_classesMatchTheShippedFile(self):
        """
        The interval classes and the shipped file have the same keys, so the
        reference (built from both) covers them all.
        """
        shipped = json.loads(ROOT.descendant(["wazuhcluster", "cluster.json"]).getContent())
        for section, cls in SECTIONS.items():
            self.assertEqual([spec.name for spec in attrs.fields(cls)],
                             list(shipped["intervals"][section]))

    def test_checkMode(self):
        """
        C{docs/generate.py --check} finds the documentation current.
        """
        self.assertEqual(generate.main(["--check"]), 0)


class DocumentsTests(SynchronousTestCase):
    """
    The documents the README points to exist and link to each other.
    """

    def test_documents(self):
        """
        README points to the repository's own architecture document and to
        docs/, not to a file outside the repository; every document it
        names exists, and the architecture document has its picture.
        """
        readme = ROOT.child("README.md").getContent().decode()
        self.assertNotIn("../shared", readme)
        for name in ("architecture", "deployment", "configuration", "troubleshooting"):
            self.assertIn(f"docs/{name}.md", readme)
            self.assertTrue(DOCS.child(f"{name}.md").exists(), name)
        architecture = DOCS.child("architecture.md").getContent().decode()
        self.assertIn("TLS listener :1516", architecture)
        for link in re.findall(r"\]\(([a-z]+\.md)\)", architecture):
            self.assertTrue(DOCS.child(link).exists(), link)

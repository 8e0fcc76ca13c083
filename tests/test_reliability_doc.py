# -*- test-case-name: tests.test_reliability_doc -*-
"""
Tests for C{docs/reliability.md} and its generator C{docs/reliability.py}:
every fault, fuzz and attack case of the suite is in the table with its
current texts (checked without running the cases), and the generator reads
docstrings and trial's output right.
"""

import importlib.util

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

ROOT = FilePath(__file__).parent().parent()
DOCS = ROOT.child("docs")

_spec = importlib.util.spec_from_file_location("docs_reliability",
                                               DOCS.child("reliability.py").path)
reliability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability)

REGENERATE = "run 'python docs/reliability.py' (it runs the cases, about two minutes)"

SAMPLE_OUTPUT = """\
tests.test_faults.FaultTests.test_a ... [OK]
(12.345 secs)
tests.test_faults.FaultTests.test_b ... some output
of the test, [in brackets]
[FAILURE]
(1.000 secs)
tests.test_faults.FaultTests.test_c ... [FAILURE][ERROR]
(0.100 secs)
tests.test_fuzz.F.test_d ... [SKIPPED]
(0.000 secs)
tests.test_fuzz.F.test_e ... 
-------------------------------------------------------------------------------
Ran 5 tests in 13.445s
"""


class TableTests(SynchronousTestCase):
    """
    C{docs/reliability.md} lists every case of the modules it covers.
    """

    def setUp(self):
        self.cases = reliability.collectCases(reliability.caseModules())
        self.text = DOCS.child("reliability.md").getContent().decode("utf-8")

    def test_everyCaseDocumented(self):
        """
        Every case has its Injected and Checked paragraphs, is in the table
        with the texts its docstring has now, and the table has no row of
        a case that is gone.
        """
        self.assertEqual(reliability.problems(self.cases, self.text), [], REGENERATE)

    def test_modulesCovered(self):
        """
        The table covers the fault and fuzz modules, and every
        C{test_faults*}, C{test_fuzz*} or C{test_attacks*} module there
        is (and no other).
        """
        modules = reliability.caseModules()
        self.assertIn("tests.test_faults", modules)
        self.assertIn("tests.test_fuzz", modules)
        present = sorted(f"tests.{child.basename()[:-3]}"
                         for child in ROOT.child("tests").children()
                         if child.basename().startswith(("test_faults", "test_fuzz",
                                                         "test_attacks"))
                         and child.basename().endswith(".py"))
        self.assertEqual(modules, present)
        self.assertGreaterEqual(len(self.cases), 10)
        for module in modules:
            self.assertIn(f"\n## {module}\n", self.text)

    def test_countsMatchRows(self):
        """
        The summary line counts the rows of the table, by outcome.
        """
        rows, counts = reliability.parseTable(self.text)
        self.assertEqual(counts["cases"], len(rows))
        byOutcome = {}
        for _, _, _, outcome in rows.values():
            name = outcome.split(" (")[0]
            byOutcome[name] = byOutcome.get(name, 0) + 1
        self.assertEqual({k: v for k, v in counts.items() if k != "cases"}, byOutcome)

    def test_linkedFromReadme(self):
        """
        README links the table.
        """
        self.assertIn("(docs/reliability.md)", ROOT.child("README.md").getContent().decode())


class GeneratorTests(SynchronousTestCase):
    """
    How the generator reads docstrings, modules and trial's output.
    """

    def test_docstringFields(self):
        """
        The summary is the first sentence; a field runs over several lines
        until the next field or a blank line; a docstring without the
        fields lacks both.
        """
        summary, fields = reliability.parseDocstring("""
            A master killed: files stay whole. More words.

            Injected: SIGKILL to the
            master mid-sync.
            Checked: files whole;
            staging clean.

            Not part of Checked.
            """)
        self.assertEqual(summary, "A master killed: files stay whole.")
        self.assertEqual(fields, {"Injected": "SIGKILL to the master mid-sync.",
                                  "Checked": "files whole; staging clean."})
        case = reliability.Case("tests.test_x", "T.test_y", "Only a summary.")
        self.assertEqual(case.missing(), ["Injected", "Checked"])
        self.assertEqual(case.id, "tests.test_x.T.test_y")

    def test_moduleSelection(self):
        """
        Modules named C{test_faults*}, C{test_fuzz*} and C{test_attacks*}
        are covered, others not.
        """
        tests = FilePath(self.mktemp())
        tests.makedirs()
        for name in ("test_faults.py", "test_faults_clientkeys.py", "test_attacks.py",
                     "test_fuzz.py", "test_hello.py", "cluster.py", "test_faults.pyc"):
            tests.child(name).setContent(b"")
        self.assertEqual(reliability.caseModules(tests.path),
                         ["tests.test_attacks", "tests.test_faults",
                          "tests.test_faults_clientkeys", "tests.test_fuzz"])

    def test_outcomes(self):
        """
        Each test's result is read from trial's timing output, with its
        duration: output between its name and its result is skipped, the
        worst of several results counts, a test without a result is absent.
        """
        self.assertEqual(reliability.parseOutcomes(SAMPLE_OUTPUT), {
            "tests.test_faults.FaultTests.test_a": ("passed", 12.345),
            "tests.test_faults.FaultTests.test_b": ("FAILED", 1.0),
            "tests.test_faults.FaultTests.test_c": ("ERROR", 0.1),
            "tests.test_fuzz.F.test_d": ("skipped", 0.0),
        })

    def test_renderedTableReadsBack(self):
        """
        A rendered table reads back as the cases' texts and outcomes, with
        counts; a case not run says so; a changed docstring is noticed.
        """
        cases = [reliability.Case("tests.test_faults", "T.test_a",
                                  "Summary a | pipe.\n\nInjected: C{x}.\nChecked: y."),
                 reliability.Case("tests.test_faults", "T.test_b",
                                  "Summary b.\n\nInjected: p.\nChecked: q.")]
        text = reliability.render(cases, {"tests.test_faults.T.test_a": ("passed", 2.0)},
                                  "python -m twisted.trial x", "2026-01-01 00:00 UTC")
        rows, counts = reliability.parseTable(text)
        self.assertEqual(rows["tests.test_faults.T.test_a"],
                         ("Summary a \\| pipe.", "`x`.", "y.", "passed (2.0 s)"))
        self.assertEqual(rows["tests.test_faults.T.test_b"][3], "not run")
        self.assertEqual(counts, {"cases": 2, "passed": 1, "not run": 1})
        self.assertEqual(reliability.problems(cases, text), [])
        changed = [cases[0], reliability.Case("tests.test_faults", "T.test_b",
                                              "Summary b.\n\nInjected: p2.\nChecked: q.")]
        self.assertEqual(reliability.problems(changed, text),
                         ["tests.test_faults.T.test_b: the table shows another text"])
        gone = cases + [reliability.Case("tests.test_faults", "T.test_c", "New.")]
        self.assertEqual(reliability.problems(gone[:1], text),
                         ["tests.test_faults.T.test_b: in the table, but no such case"])
        self.assertEqual(reliability.problems(gone, text), [
            "tests.test_faults.T.test_c: the docstring has no 'Injected:' paragraph",
            "tests.test_faults.T.test_c: the docstring has no 'Checked:' paragraph",
            "tests.test_faults.T.test_c: not in the table"])

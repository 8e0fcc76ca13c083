#!/usr/bin/env python3
# -*- test-case-name: tests.test_reliability_doc -*-
"""
Write C{docs/reliability.md}: the table of every fault, fuzz and attack case
of the test suite, what it injects, what it checks, and its outcome in a run
made now, so that the table cannot drift from the suite.

The cases are the test methods of C{tests/test_faults*.py},
C{tests/test_fuzz*.py} and C{tests/test_attacks*.py}.  Each one's
docstring carries two paragraphs after its summary::

    Injected: what the case does to the cluster (may go on over
    several lines).
    Checked: what it asserts afterwards (may go on too).

Run it from the repository root (it runs those modules with trial, about
two minutes)::

    python docs/reliability.py                     # run the cases, rewrite the table
    python docs/reliability.py --from-output FILE  # use the output of a run made with
                                                   # trial --reporter=timing
    python docs/reliability.py --check             # exit 1 if the table misses a case,
                                                   # or shows another text (runs nothing)

It exits with status 1 when a case failed, or a docstring lacks a field.
"""

import argparse
import datetime
import fnmatch
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
TESTS = os.path.join(ROOT, "tests")
TABLE = os.path.join(DOCS, "reliability.md")

#: The modules whose test methods are cases of the table.
MODULE_PATTERNS = ("test_faults*.py", "test_fuzz*.py", "test_attacks*.py")

#: The docstring fields of a case, in order.
FIELDS = ("Injected", "Checked")

#: What trial's reporters print for a result, and what the table says.
OUTCOMES = {"OK": "passed", "FAILURE": "FAILED", "ERROR": "ERROR", "SKIPPED": "skipped",
            "TODO": "expected failure", "SUCCESS!?!": "unexpected success"}

#: Worst first: a case with several results shows the worst.
_SEVERITY = ("ERROR", "FAILURE", "SUCCESS!?!", "SKIPPED", "TODO", "OK")

_RESULT = re.compile(r"\[(OK|FAILURE|ERROR|SKIPPED|TODO|SUCCESS!\?!)\]")


class Case:
    """
    One test method of the table.

    @ivar module: its module's name (C{tests.test_faults}).
    @ivar name: C{Class.method}.
    @ivar summary: the docstring's first sentence.
    @ivar fields: C{Injected} and C{Checked} to their text (one line each),
        for those the docstring has.
    """

    def __init__(self, module, name, docstring):
        self.module = module
        self.name = name
        self.summary, self.fields = parseDocstring(docstring)

    @property
    def id(self):
        return f"{self.module}.{self.name}"

    def missing(self):
        """
        The fields its docstring lacks.
        """
        return [field for field in FIELDS if not self.fields.get(field)]


def parseDocstring(docstring):
    """
    The summary (first sentence) and the fields of a case's docstring.

    A field is a paragraph that starts with C{Name:}; it goes on until a
    blank line, the next field, or the end.

    @return: C{(summary, {field: text})}, texts joined into one line.
    """
    lines = [line.strip() for line in (docstring or "").strip().splitlines()]
    fields = {}
    current = None
    paragraphs = [[]]
    for line in lines:
        field = next((f for f in FIELDS if line.startswith(f + ":")), None)
        if field is not None:
            current = field
            fields[field] = [line[len(field) + 1:].strip()]
        elif not line:
            current = None
            paragraphs.append([])
        elif current is not None:
            fields[current].append(line)
        else:
            paragraphs[-1].append(line)
    first = " ".join(next((p for p in paragraphs if p), []))
    summary = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0] if first else ""
    return summary, {name: " ".join(words).strip() for name, words in fields.items()}


def caseModules(testsDir=TESTS):
    """
    The names of the modules of the table that exist in C{testsDir}.
    """
    names = sorted(name for name in os.listdir(testsDir)
                   if any(fnmatch.fnmatch(name, pattern) for pattern in MODULE_PATTERNS))
    return [f"tests.{name[:-3]}" for name in names]


def _flatten(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _flatten(test)
        else:
            yield test


def collectCases(modules):
    """
    Every test method of C{modules} (imported, not run), in trial's order.

    @rtype: L{list} of L{Case}
    """
    from twisted.trial.runner import TestLoader

    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    loader = TestLoader()
    cases = []
    for name in modules:
        module = importlib.import_module(name)
        for test in _flatten(loader.loadModule(module)):
            method = getattr(type(test), test._testMethodName)
            cases.append(Case(name, f"{type(test).__name__}.{test._testMethodName}",
                              method.__doc__))
    return cases


def parseOutcomes(output):
    """
    The outcome of every test in the output of
    C{trial --reporter=timing}: C{{test id: (outcome, seconds)}}.

    Output a test wrote between its name and its result is skipped; a test
    with several results (a failure, then an error in its cleanup) gets the
    worst.
    """
    outcomes = {}
    pattern = re.compile(r"^([\w.]+) \.\.\. (.*?)^\((\d+\.\d+) secs\)$", re.M | re.S)
    for match in pattern.finditer(output):
        found = _RESULT.findall(match.group(2))
        if not found:
            continue
        worst = min(found, key=_SEVERITY.index)
        outcomes[match.group(1)] = (OUTCOMES[worst], float(match.group(3)))
    return outcomes


def runCases(modules):
    """
    Run C{modules} with trial, showing its output as it comes.

    @return: (the output, the command run).
    """
    scratch = tempfile.mkdtemp(prefix="wzc-reliability-")
    command = [sys.executable, "-m", "twisted.trial", "--reporter=timing",
               f"--temp-directory={os.path.join(scratch, '_trial_temp')}"] + list(modules)
    try:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        pieces = []
        for line in process.stdout:
            sys.stdout.write(line)
            pieces.append(line)
        process.wait()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    shown = ["python", "-m", "twisted.trial", "--reporter=timing"] + list(modules)
    return "".join(pieces), " ".join(shown)


def _cell(text):
    """
    Text for a Markdown table cell: epytext markup as code, pipes escaped.
    """
    text = re.sub(r"[CL]\{([^}]*)\}", r"`\1`", text)
    text = re.sub(r"I\{([^}]*)\}", r"*\1*", text)
    return text.replace("|", "\\|").replace("\n", " ")


def _moduleSummary(name):
    doc = importlib.import_module(name).__doc__ or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    return re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]


def render(cases, outcomes, command, date):
    """
    The text of C{docs/reliability.md}.
    """
    counts = {}
    for case in cases:
        outcome = outcomes.get(case.id, ("not run", 0.0))[0]
        counts[outcome] = counts.get(outcome, 0) + 1
    total = sum(seconds for _, seconds in outcomes.values())
    order = ["passed", "FAILED", "ERROR", "skipped", "expected failure",
             "unexpected success", "not run"]
    summary = ", ".join(f"{counts[o]} {o}" for o in order if counts.get(o))
    lines = [
        "# Reliability: faults, fuzzing and attacks",
        "",
        "Generated by `python docs/reliability.py` from the test suite's own output; do not edit.",
        "Each row is one test case: what it injects into a running cluster and what it checks",
        "afterwards (both from the case's docstring), and what trial reported for it in the run",
        "below. `tests/test_reliability_doc.py` fails when a case is missing here or its text",
        "changed, so regenerate after adding or changing one.",
        "",
        f"Run on {date}: `{command}`",
        "",
        f"**{len(cases)} cases: {summary}** ({total:.0f} s in all).",
    ]
    for module in dict.fromkeys(case.module for case in cases):
        lines += ["", f"## {module}", "", _cell(_moduleSummary(module)), "",
                  "| Case | Injected | Checked | Outcome |", "|---|---|---|---|"]
        for case in cases:
            if case.module != module:
                continue
            outcome, seconds = outcomes.get(case.id, ("not run", 0.0))
            shown = f"{outcome} ({seconds:.1f} s)" if outcome != "not run" else outcome
            lines.append(
                f"| `{case.name}`: {_cell(case.summary)} | {_cell(case.fields.get('Injected', ''))}"
                f" | {_cell(case.fields.get('Checked', ''))} | {shown} |")
    return "\n".join(lines) + "\n"


def parseTable(text):
    """
    The rows of a C{docs/reliability.md}: C{{case id: (summary, injected,
    checked, outcome)}} (cell texts as written), and the counts of its
    summary line.
    """
    rows = {}
    module = None
    row = re.compile(r"^\| `([\w.]+)`: (.*?) \| (.*?) \| (.*?) \| (.*?) \|$")
    for line in text.splitlines():
        if line.startswith("## "):
            module = line[3:].strip()
            continue
        match = row.match(line)
        if match and module is not None:
            name, summary, injected, checked, outcome = match.groups()
            rows[f"{module}.{name}"] = (summary, injected, checked, outcome)
    counts = {}
    header = re.search(r"^\*\*(\d+) cases: (.*?)\*\*", text, re.M)
    if header:
        counts["cases"] = int(header.group(1))
        for part in header.group(2).split(", "):
            number, _, outcome = part.partition(" ")
            counts[outcome] = int(number)
    return rows, counts


def problems(cases, text):
    """
    What makes C{text} (a C{docs/reliability.md}) stale for C{cases}: a case
    without its fields, a case missing or shown with another text, a row
    of no case.

    @return: a list of lines (empty when the table is current).
    """
    found = []
    rows, _ = parseTable(text)
    for case in cases:
        for field in case.missing():
            found.append(f"{case.id}: the docstring has no '{field}:' paragraph")
        row = rows.get(case.id)
        if row is None:
            found.append(f"{case.id}: not in the table")
        elif row[:3] != (_cell(case.summary), _cell(case.fields.get("Injected", "")),
                         _cell(case.fields.get("Checked", ""))):
            found.append(f"{case.id}: the table shows another text")
    known = {case.id for case in cases}
    found += [f"{caseId}: in the table, but no such case" for caseId in rows
              if caseId not in known]
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="check the table against the cases; run nothing")
    parser.add_argument("--from-output", metavar="FILE",
                        help="the output of 'trial --reporter=timing' on the modules")
    parser.add_argument("--output", default=TABLE, help="the table to write")
    options = parser.parse_args(argv)
    modules = caseModules()
    cases = collectCases(modules)
    if options.check:
        with open(options.output, encoding="utf-8") as f:
            stale = problems(cases, f.read())
        for line in stale:
            print(line, file=sys.stderr)
        return 1 if stale else 0
    missing = [f"{case.id}: the docstring has no '{field}:' paragraph"
               for case in cases for field in case.missing()]
    if options.from_output:
        with open(options.from_output, encoding="utf-8", errors="replace") as f:
            output = f.read()
        command = "python -m twisted.trial --reporter=timing " + " ".join(modules)
    else:
        output, command = runCases(modules)
    outcomes = parseOutcomes(output)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(options.output, "w", encoding="utf-8") as f:
        f.write(render(cases, outcomes, command, date))
    bad = [case.id for case in cases if outcomes.get(case.id, ("not run",))[0] != "passed"]
    for line in missing + [f"{caseId}: {outcomes.get(caseId, ('not run',))[0]}"
                           for caseId in bad]:
        print(line, file=sys.stderr)
    print(f"wrote {os.path.relpath(options.output, ROOT)}: {len(cases)} cases, "
          f"{len(cases) - len(bad)} passed")
    return 1 if missing or bad else 0


if __name__ == "__main__":
    sys.exit(main())

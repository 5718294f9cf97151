#!/usr/bin/env python3
"""Compares two runs of docker-py's integration tests (JUnit XML from pytest):
one straight to the inner dockerd, one through the dindbox proxy.

    docker-py-compare.py candidates DIRECT.xml PROXY.xml REFUSALS SUITE_DIR [RETRY.xml...]
        prints the pytest node ids that passed directly, failed through the
        proxy (and every retry so far) and are not a documented refusal: the
        ones to try again
    docker-py-compare.py report DIRECT.xml PROXY.xml REFUSALS SUITE_DIR [RETRY.xml...]
        prints the counts and every test that passed directly but not
        through the proxy, each a documented refusal or a regression;
        exits 1 when there is a regression

A documented refusal is a failure whose output carries the proxy's
`dindbox: WHAT is not allowed: WHY` message, with a message that matches an
entry of REFUSALS (scripts/docker-py-refusals.txt: `REGEX | reason`). A test
that passes through the proxy when tried again is reported as flaky, not as
a regression (docker-py has a few races of its own: `logs` right after
`start`, container counts). Standard library only.
"""

import os
import re
import sys
import xml.etree.ElementTree as ET

# The proxy's refusal as docker-py prints it: `... Forbidden ("dindbox: WHAT
# is not allowed: WHY")`, or the message alone in an assertion.
REFUSAL = re.compile(r"dindbox: [^\n]*? is not allowed: [^\n]*?(?=\"\)|'\]|'\)|$)", re.M)


def outcomes(path):
    """{(classname, name): (outcome, text)} for every test case in a JUnit file."""
    if not path or not os.path.exists(path):
        return {}
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                text += (child.get("message") or "") + "\n" + (child.text or "") + "\n"
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
                text += child.get("message") or ""
        # A test that failed in its own teardown has a second record: keep the worst.
        if results.get(key, ("passed",))[0] != "failed":
            results[key] = (outcome, text)
    return results


def node_id(key, suite_dir):
    """The pytest node id of a JUnit (classname, name): the longest dotted
    prefix of the classname that is a file, then the classes."""
    classname, name = key
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if os.path.exists(os.path.join(suite_dir, path)):
            return "::".join([path] + parts[cut:] + [name])
    return f"{classname}::{name}"


def read_refusals(path):
    """[(regex, reason)] from `REGEX | reason` lines; `#` starts a comment line."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pattern, _, reason = line.partition(" | ")
            entries.append((re.compile(pattern.strip()), reason.strip()))
    return entries


def documented(text, refusals):
    """(message, reason) of the first proxy refusal in `text` that the
    allow-list expects, else (first refusal or None, None)."""
    messages = REFUSAL.findall(text)
    for message in messages:
        for pattern, reason in refusals:
            if pattern.search(message):
                return message, reason
    return (messages[0] if messages else None), None


def only_through_proxy(direct, proxy):
    """The tests that passed directly and did not pass through the proxy."""
    return sorted(
        key for key, (outcome, _) in direct.items()
        if outcome == "passed" and proxy.get(key, ("missing",))[0] != "passed"
    )


def passed_on_retry(key, retries):
    return any(retry.get(key, ("missing",))[0] == "passed" for retry in retries)


def candidates(direct_xml, proxy_xml, refusals_path, suite_dir, *retry_xmls):
    direct, proxy = outcomes(direct_xml), outcomes(proxy_xml)
    retries = [outcomes(path) for path in retry_xmls]
    refusals = read_refusals(refusals_path)
    for key in only_through_proxy(direct, proxy):
        _, reason = documented(proxy.get(key, ("", ""))[1], refusals)
        if reason is None and not passed_on_retry(key, retries):
            print(node_id(key, suite_dir))
    return 0


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "(no output)"


def count(results, outcome):
    return sum(1 for o, _ in results.values() if o == outcome)


def report(direct_xml, proxy_xml, refusals_path, suite_dir, *retry_xmls):
    direct, proxy = outcomes(direct_xml), outcomes(proxy_xml)
    retries = [outcomes(path) for path in retry_xmls]
    refusals = read_refusals(refusals_path)
    refused, flaky, regressions = [], [], []
    for key in only_through_proxy(direct, proxy):
        outcome, text = proxy.get(key, ("missing", "not run through the proxy"))
        message, reason = documented(text, refusals)
        name = node_id(key, suite_dir)
        if reason is not None:
            refused.append((name, message, reason))
        elif passed_on_retry(key, retries):
            flaky.append(name)
        else:
            why = message or first_line(text)
            regressions.append((name, why))
    print(f"docker-py: {len(direct)} tests; passed directly {count(direct, 'passed')}, "
          f"through the proxy {count(proxy, 'passed')}; "
          f"failed only through the proxy {len(refused) + len(flaky) + len(regressions)}: "
          f"{len(refused)} documented refusals, {len(flaky)} flaky (passed when tried again), "
          f"{len(regressions)} regressions")
    if refused:
        print("\n== documented refusals, by the allow-list entry they meet")
        by_reason = {}
        for name, message, reason in refused:
            by_reason.setdefault(reason, []).append((name, message))
        for reason, tests in by_reason.items():
            print(f"  [{len(tests)}] {reason}\n      e.g. {tests[0][1][:200]}")
            for name, _ in tests:
                print(f"      {name}")
    if flaky:
        print("\n== failed through the proxy once, passed when tried again")
        for name in flaky:
            print(f"  {name}")
    better = sorted(k for k, (o, _) in proxy.items()
                    if o == "passed" and direct.get(k, ("missing",))[0] != "passed")
    if better:
        print(f"\n== passed only through the proxy ({len(better)})")
        for key in better:
            print(f"  {node_id(key, suite_dir)}")
    if regressions:
        print(f"\n== REGRESSIONS: passed directly, failed through the proxy "
              f"on each of {len(retries) + 1} tries")
        for name, why in regressions:
            print(f"  {name}\n      {why}")
        return 1
    return 0


def main(argv):
    if len(argv) >= 6 and argv[1] in ("candidates", "report"):
        return {"candidates": candidates, "report": report}[argv[1]](*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

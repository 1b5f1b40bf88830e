#!/usr/bin/env python3
"""Dependency policy: licenses and duplicate versions (what `cargo deny check
licenses bans` would do), against the policy in .ci/deps.toml.

Reads `cargo metadata --format-version 1 --locked --all-features`, so every
crate the lock file holds is checked, whatever its target or kind.

- licenses: each crate's SPDX expression must be satisfiable with the allowed
  licenses (`A OR B`: one of them; `A AND B`: both; `A WITH exc`: `A`, or the
  whole `A WITH exc` listed; parentheses; the old `A/B` form means `A OR B`).
  A crate with no expression needs a `[[licenses.clarify]]` entry.
- duplicates: a crate in more than one version must be listed under
  `[[duplicates]]` with a reason; a listed crate that is no longer duplicated
  is reported as stale (a warning, not a failure).

Not checked: security advisories. `cargo deny check advisories` (or
`cargo audit`) needs the RustSec advisory database, fetched from GitHub, and
CI reaches package registries only.

Usage:
  python3 .ci/deps.py                   check the workspace (exit 1 on a violation)
  python3 .ci/deps.py --metadata FILE   check a saved `cargo metadata` output
  python3 .ci/deps.py --self-test       plant violations in a copy and check they are caught

Python 3.11+ standard library only.
"""

import argparse
import copy
import json
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

from workspace import ROOT, cargo_metadata
POLICY = ROOT / ".ci" / "deps.toml"


class ExprError(ValueError):
    pass


def tokenize(expr):
    # `/` is the pre-SPDX separator crates.io still shows for old crates.
    tokens = re.findall(r"\(|\)|/|[^\s()/]+", expr)
    return ["OR" if t == "/" else t for t in tokens]


def parse(expr):
    """SPDX expression -> tree: ("or"|"and", [children]) or ("id", "X" or "X WITH Y")."""
    tokens = tokenize(expr)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        if pos >= len(tokens):
            raise ExprError(f"`{expr}`: ends where a license was expected")
        pos += 1
        return tokens[pos - 1]

    def disjunction():
        terms = [conjunction()]
        while peek() == "OR":
            take()
            terms.append(conjunction())
        return terms[0] if len(terms) == 1 else ("or", terms)

    def conjunction():
        terms = [atom()]
        while peek() == "AND":
            take()
            terms.append(atom())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def atom():
        token = take()
        if token == "(":
            inner = disjunction()
            if take() != ")":
                raise ExprError(f"`{expr}`: `(` without its `)`")
            return inner
        if token in ("OR", "AND", "WITH", ")"):
            raise ExprError(f"`{expr}`: `{token}` where a license was expected")
        if peek() == "WITH":
            take()
            exception = take()
            if exception in ("OR", "AND", "WITH", "(", ")"):
                raise ExprError(f"`{expr}`: `WITH` needs an exception name")
            return ("id", f"{token} WITH {exception}")
        return ("id", token)

    tree = disjunction()
    if pos != len(tokens):
        raise ExprError(f"`{expr}`: unexpected `{tokens[pos]}`")
    return tree


def satisfiable(tree, allowed):
    kind, value = tree
    if kind == "id":
        return value in allowed or value.split(" WITH ")[0] in allowed
    results = [satisfiable(child, allowed) for child in value]
    return any(results) if kind == "or" else all(results)


def identifiers(tree):
    kind, value = tree
    if kind == "id":
        return [value]
    return [i for child in value for i in identifiers(child)]


def load_policy(path):
    with open(path, "rb") as f:
        policy = tomllib.load(f)
    problems = []
    allowed = set(policy.get("licenses", {}).get("allow", []))
    clarify = {}
    for entry in policy.get("licenses", {}).get("clarify", []):
        if not entry.get("name") or not entry.get("license") or not entry.get("reason", "").strip():
            problems.append(f"{path.name}: a [[licenses.clarify]] entry needs name, license and reason: {entry}")
            continue
        clarify[entry["name"]] = entry["license"]
    duplicates = {}
    for entry in policy.get("duplicates", []):
        if not entry.get("name") or not entry.get("reason", "").strip():
            problems.append(f"{path.name}: a [[duplicates]] entry needs a name and a reason: {entry}")
            continue
        duplicates[entry["name"]] = entry["reason"]
    return allowed, clarify, duplicates, problems


def dependents(metadata):
    """package id -> sorted "name version" of the packages that depend on it."""
    names = {p["id"]: f'{p["name"]} {p["version"]}' for p in metadata["packages"]}
    users = defaultdict(set)
    for node in (metadata.get("resolve") or {}).get("nodes", []):
        for dep in node.get("deps", []):
            users[dep["pkg"]].add(names.get(node["id"], node["id"]))
    return {pkg: sorted(u) for pkg, u in users.items()}


def version_key(package):
    return [int(part) if part.isdigit() else part for part in re.split(r"[.+-]", package["version"])]


def check(metadata, allowed, clarify, duplicates):
    """-> (errors, warnings), each a list of lines naming crate and version."""
    errors, warnings = [], []
    for p in sorted(metadata["packages"], key=lambda p: (p["name"], p["version"])):
        crate = f'{p["name"]} {p["version"]}'
        expr = clarify.get(p["name"]) or p.get("license")
        if not expr:
            where = f' (license-file {p["license_file"]})' if p.get("license_file") else ""
            errors.append(
                f"license: {crate} declares no SPDX license expression{where}; "
                f"read its license and add a [[licenses.clarify]] entry to .ci/deps.toml"
            )
            continue
        try:
            tree = parse(expr)
        except ExprError as e:
            errors.append(f"license: {crate}: cannot read the license expression {e}")
            continue
        if not satisfiable(tree, allowed):
            refused = sorted({i for i in identifiers(tree) if not satisfiable(("id", i), allowed)})
            errors.append(
                f"license: {crate} is licensed `{expr}`, not satisfiable with the allowed licenses "
                f"(not allowed: {', '.join(refused)}); replace the crate, or allow the license in "
                f".ci/deps.toml [licenses] allow after reading it"
            )

    versions = defaultdict(list)
    for p in metadata["packages"]:
        versions[p["name"]].append(p)
    users = dependents(metadata)
    for name in sorted(versions):
        found = versions[name]
        if len(found) < 2 or name in duplicates:
            continue
        lines = [
            f'    {p["version"]} (used by {", ".join(users.get(p["id"], [])) or "the workspace"})'
            for p in sorted(found, key=version_key)
        ]
        errors.append(
            f"duplicate: {name} appears in {len(found)} versions; align the dependents, or list it "
            f"under [[duplicates]] in .ci/deps.toml with the reason:\n" + "\n".join(lines)
        )
    for name in sorted(duplicates):
        if len(versions.get(name, [])) < 2:
            warnings.append(f"stale: {name} is listed under [[duplicates]] but appears in one version or none; remove the entry")
    return errors, warnings


def self_test(metadata, policy):
    allowed, clarify, duplicates, _ = policy

    # The expression reader on its own.
    cases = {
        "MIT": True,
        "MIT OR GPL-3.0-only": True,
        "GPL-3.0-only OR MIT": True,
        "MIT AND GPL-3.0-only": False,
        "(MIT OR Apache-2.0) AND Unicode-3.0": True,
        "(MIT OR GPL-3.0-only) AND (GPL-2.0-only OR LGPL-2.1-or-later)": False,
        "Apache-2.0 WITH LLVM-exception OR MIT": True,
        "GPL-2.0-only WITH Classpath-exception-2.0": False,
        "MIT/Apache-2.0": True,
        "Apache-2.0 / MIT": True,
        "GPL-3.0-only/AGPL-3.0-only": False,
    }
    for expr, expected in cases.items():
        got = satisfiable(parse(expr), allowed)
        assert got == expected, f"self-test: `{expr}` judged {got}, expected {expected}"
    for bad in ["MIT OR", "(MIT", "MIT AND AND Apache-2.0", "MIT WITH", "MIT)"]:
        try:
            parse(bad)
        except ExprError:
            continue
        raise AssertionError(f"self-test: malformed `{bad}` was accepted")

    # Violations planted in a copy of the real metadata must be found, and only they.
    before, _ = check(metadata, allowed, clarify, duplicates)
    planted = copy.deepcopy(metadata)
    names = [p["name"] for p in planted["packages"]]
    single = sorted(n for n in set(names) if names.count(n) == 1 and n not in duplicates)
    victim, twin_of = single[0], single[1]
    for p in planted["packages"]:
        if p["name"] == victim:
            p["license"] = "MIT AND GPL-3.0-only"
            victim_version = p["version"]
        if p["name"] == twin_of:
            twin = copy.deepcopy(p)
    twin["version"] = "0.0.0-planted"
    twin["id"] = twin["id"] + "-planted"
    planted["packages"].append(twin)
    after, _ = check(planted, allowed, clarify, duplicates)
    new = [e for e in after if e not in before]
    assert len(new) == 2, "self-test: expected 2 planted violations, found:\n" + "\n".join(new)
    assert any(e.startswith(f"license: {victim} {victim_version} ") and "GPL-3.0-only" in e for e in new), new
    assert any(e.startswith(f"duplicate: {twin_of} appears in 2 versions") and "0.0.0-planted" in e for e in new), new

    # A crate with no expression at all is refused until clarified.
    missing = copy.deepcopy(metadata)
    for p in missing["packages"]:
        if p["name"] == victim:
            p["license"] = None
    after, _ = check(missing, allowed, clarify, duplicates)
    assert any(e.startswith(f"license: {victim} ") and "clarify" in e for e in after if e not in before), after
    after, _ = check(missing, allowed, {**clarify, victim: "MIT"}, duplicates)
    assert after == before, after

    print(f"deps self-test: ok (planted a `MIT AND GPL-3.0-only` license on {victim}, a second {twin_of})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata", type=Path, help="a saved `cargo metadata --format-version 1` output")
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()

    policy = load_policy(args.policy)
    if policy[3]:
        print("\n".join(policy[3]), file=sys.stderr)
        return 2
    metadata = json.loads(args.metadata.read_text()) if args.metadata else cargo_metadata()
    if args.self_test:
        self_test(metadata, policy)
        return 0

    errors, warnings = check(metadata, *policy[:3])
    for w in warnings:
        print(f"deps: warning: {w}", file=sys.stderr)
    if errors:
        for e in errors:
            print(f"deps: {e}", file=sys.stderr)
        print(f"deps: {len(errors)} violation(s) of .ci/deps.toml", file=sys.stderr)
        return 1
    print(f"deps: {len(metadata['packages'])} crates: licenses allowed, duplicates listed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

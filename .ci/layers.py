#!/usr/bin/env python3
"""Layering and codemap checks for ARCHITECTURE.md, against `cargo metadata`.

1. Layers: ARCHITECTURE.md says dependencies only point down
   (`model ← plan ← engine ← (server) ← cli`, events used by the engine; bench
   and load on top) and names what some crates must never depend on. Those
   rules are the data below (LAYERS, NEVER, BINARIES, API_*), checked
   on the normal and build dependencies between workspace crates (dev
   dependencies may reach anywhere: tests and benches sit outside the layers)
   and on baton-api's external dependencies.
2. Codemap: every `crates/*/src/**/*.rs` file must be named in the codemap
   section of its crate, the way the codemap writes names: `src/x/y.rs`, or
   `y.rs` in the same bullet as its folder (`src/x/`, or `x/` for a nested
   folder); a folder named that way names its `mod.rs`. `crates/<crate>/src/...`
   anywhere in the document counts too.
3. File circles: inside a crate, no two module files depend on each other,
   directly or around a loop. A file depends on another when its code (not
   its comments or its test module) names it: `use crate::a::b`, `super::b`,
   `crate::a::b::f(..)`, a child module by name. Naming an ancestor is not a
   dependency: a folder's `mod.rs` holds what its files share.

Usage:
  python3 .ci/layers.py                   check (exit 1 on a violation, each one printed)
  python3 .ci/layers.py --metadata FILE   use a saved `cargo metadata --format-version 1` output
  python3 .ci/layers.py --self-test       plant violations in copies and check they are caught

Python 3 standard library only.
"""

import argparse
import copy
import json
import re
import sys
from pathlib import Path

from workspace import ROOT, cargo_metadata

# Bottom to top; a crate may depend only on crates of lower layers.
LAYERS = [
    ["baton-model", "baton-events", "baton-api"],  # foundations: no workspace dependency
    ["baton-plan"],
    ["baton-engine"],
    ["baton-server"],
    ["baton-load"],  # a client of the HTTP API
    ["baton-bench"],  # on the libraries, and baton-load's launcher for the http suite
    ["baton-cli"],  # the binary
]

# (crate, crates it must never depend on, why), on top of the layer order.
NEVER = [
    ("baton-events", {"baton-model", "baton-plan", "baton-api"},
     "the event log knows nothing of workflows or HTTP: the engine uses it, not the other way round"),
    ("baton-load", {"baton-engine", "baton-server", "baton-plan", "baton-events"},
     "the load generator talks to its target over the HTTP API only (baton-api types)"),
]

# The only crates with a binary target, and no crate may depend on them.
BINARIES = {"baton-cli"}

# baton-api is serde-only: the CLI and the load tester use it without an HTTP stack.
API = "baton-api"
API_ALLOWED = {"serde", "serde_json"}
API_BANNED = {"axum", "hyper", "hyper-util", "http", "http-body", "tower", "tokio", "reqwest"}


def check_layers(metadata):
    errors = []
    members = set(metadata["workspace_members"])
    packages = {p["id"]: p for p in metadata["packages"]}
    crates = {packages[i]["name"]: packages[i] for i in members}
    layer = {name: n for n, names in enumerate(LAYERS) for name in names}

    for name in sorted(crates):
        if name not in layer:
            errors.append(f"layers: {name} is in no layer; add it to LAYERS in .ci/layers.py (and to ARCHITECTURE.md)")
    for name, p in sorted(crates.items()):
        bins = [t["name"] for t in p["targets"] if "bin" in t["kind"]]
        if bins and name not in BINARIES:
            errors.append(f"layers: {name} has a binary target ({', '.join(bins)}); the one binary is {', '.join(sorted(BINARIES))}")
        for dep in p["dependencies"]:
            if dep["kind"] == "dev" or dep["name"] not in crates:
                continue
            to = dep["name"]
            kind = dep["kind"] or "normal"
            if to in BINARIES:
                errors.append(f"layers: {name} depends on {to} ({kind}); nothing depends on the binary")
            elif name in layer and to in layer and layer[to] >= layer[name]:
                errors.append(
                    f"layers: {name} (layer {layer[name]}) depends on {to} (layer {layer[to]}, {kind}); "
                    f"dependencies point down only: {' <- '.join('/'.join(l) for l in LAYERS)}"
                )
            for crate, banned, why in NEVER:
                if name == crate and to in banned:
                    errors.append(f"layers: {name} depends on {to} ({kind}); never: {why}")

    api = crates.get(API)
    if api:
        for dep in api["dependencies"]:
            if dep["kind"] != "dev" and dep["name"] not in API_ALLOWED:
                errors.append(
                    f"layers: {API} depends on {dep['name']} ({dep['kind'] or 'normal'}); it is serde-only "
                    f"(allowed: {', '.join(sorted(API_ALLOWED))}), so clients use it without an HTTP stack"
                )
        nodes = {n["id"]: n for n in (metadata.get("resolve") or {}).get("nodes", [])}
        seen, todo = set(), [api["id"]]
        while todo:
            node = nodes.get(todo.pop())
            if not node:
                continue
            for dep in node["deps"]:
                if any(k["kind"] != "dev" for k in dep["dep_kinds"]) and dep["pkg"] not in seen:
                    seen.add(dep["pkg"])
                    todo.append(dep["pkg"])
        for pkg in sorted(seen):
            if packages[pkg]["name"] in API_BANNED:
                errors.append(f"layers: {API} pulls {packages[pkg]['name']} {packages[pkg]['version']} in through its dependencies; it must stay free of an HTTP stack")
    return errors


def codemap_blocks(text):
    """{crate folder name: [block text]} for the codemap's `### \\`crates/NAME\\`` sections."""
    codemap = re.search(r"^## Codemap\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not codemap:
        return None
    sections = {}
    current = None
    for line in codemap.group(1).splitlines():
        heading = re.match(r"^### `crates/([^`/]+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
            continue
        if line.startswith("### "):
            current = None
            continue
        if current is None:
            continue
        if line.startswith("- ") or not line.strip() or not current:
            current.append(line)
        else:
            current[-1] += "\n" + line
    return sections


def named(rel, blocks, text, crate):
    """Is crates/CRATE/REL (REL = src/...) named by the codemap?"""
    if f"crates/{crate}/{rel}" in text:
        return True
    parts = rel.split("/")
    folder, base = parts[:-1], parts[-1]
    for block in blocks:
        spans = re.findall(r"`([^`]+)`", block)
        if rel in spans:
            return True
        if len(folder) < 2:
            continue  # a file directly under src/ is named by its path only
        for span in spans:
            if not span.endswith("/"):
                continue
            f = span.rstrip("/").split("/")
            if folder[-len(f):] == f and (base in spans or base == "mod.rs"):
                return True
    return False


def check_codemap(text, files):
    """files: crate folder name -> [path relative to the crate, `src/...`]."""
    sections = codemap_blocks(text)
    if sections is None:
        return ["codemap: ARCHITECTURE.md has no `## Codemap` section"]
    errors = []
    for crate in sorted(files):
        if crate not in sections:
            errors.append(f"codemap: ARCHITECTURE.md has no `### \\`crates/{crate}\\`` section")
            continue
        for rel in sorted(files[crate]):
            if not named(rel, sections[crate], text, crate):
                errors.append(f"codemap: crates/{crate}/{rel} is not named in ARCHITECTURE.md's codemap")
    return errors


# File circles: module files of one crate that depend on each other.


def module_of(rel):
    """`src/a/b.rs` -> ("a", "b"); `src/a/mod.rs` and `src/a.rs` -> ("a",); lib/main -> ()."""
    parts = rel.removeprefix("src/").removesuffix(".rs").split("/")
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return tuple(parts)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, body = tree[:i], tree[i + 1:-1]
    items, depth, start = [], 0, 0
    for j, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(body[start:j])
            start = j + 1
    items.append(body[start:])
    return [p for item in items if item for p in expand_use(prefix + item)]


def code_of(text):
    """The text without comments, string literals and the trailing test module."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod tests\b", text, re.M)
    if cut:
        text = text[:cut.start()]
    text = re.sub(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def file_edges(crate_files):
    """{file: {files it names}} within one crate; a file naming an ancestor
    module (its parent's items, `super::`) is not an edge: a folder's `mod.rs`
    holds what its files share."""
    modules = {module_of(f): f for f in crate_files}
    edges = {}
    for rel, text in crate_files.items():
        here = module_of(rel)
        code = code_of(text)
        paths = [p for tree in re.findall(r"\buse\s+([^;]+);", code) for p in expand_use(tree)]
        rest = re.sub(r"\buse\s+[^;]+;", "", code)
        paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", rest)
        children = {m[-1] for m in modules if len(m) == len(here) + 1 and m[:-1] == here}
        paths += [m + "::x" for m in re.findall(r"(?<![:\w])(\w+)::", rest) if m in children]
        targets = set()
        for path in paths:
            segs = [s for s in path.split("::") if s]
            if not segs:
                continue
            if segs[0] == "crate":
                base, segs = (), segs[1:]
            elif segs[0] in ("super", "self"):
                base = here
                while segs and segs[0] in ("super", "self"):
                    base = base[:-1] if segs[0] == "super" else base
                    segs = segs[1:]
            elif segs[0] in children:
                base = here
            else:
                continue  # another crate, std, or a local item
            full = base + tuple(segs)
            for n in range(len(full), -1, -1):
                if full[:n] in modules:
                    target = full[:n]
                    break
            if target != here[:len(target)]:  # not an ancestor (nor the file itself)
                targets.add(modules[target])
        edges[rel] = targets
    return edges


def circles(edges):
    """Strongly connected groups of more than one file (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def check_circles(sources):
    """sources: {crate: {rel: text}}."""
    errors = []
    for crate, files in sorted(sources.items()):
        edges = file_edges(files)
        for group in circles(edges):
            detail = "; ".join(f"{a} -> {', '.join(sorted(edges[a] & set(group)))}" for a in group)
            errors.append(f"circle: crates/{crate}: {' <-> '.join(group)} ({detail})")
    return errors


def source_files():
    files = {}
    for path in sorted((ROOT / "crates").glob("*/src/**/*.rs")):
        crate = path.relative_to(ROOT / "crates").parts[0]
        files.setdefault(crate, []).append(path.relative_to(ROOT / "crates" / crate).as_posix())
    return files


def source_texts(files):
    return {crate: {rel: (ROOT / "crates" / crate / rel).read_text() for rel in rels}
            for crate, rels in files.items()}


def self_test(metadata, text, files):
    def planted(edit):
        m = copy.deepcopy(metadata)
        edit({m["packages"][i]["name"]: m["packages"][i] for i in range(len(m["packages"]))
              if m["packages"][i]["id"] in m["workspace_members"]})
        return [e for e in check_layers(m) if e not in check_layers(metadata)]

    def dep(name, kind=None):
        return {"name": name, "kind": kind, "optional": False, "source": None, "req": "*",
                "features": [], "uses_default_features": True, "target": None, "rename": None}

    cases = [
        ("upward", lambda c: c["baton-plan"]["dependencies"].append(dep("baton-engine")), "baton-plan (layer 1) depends on baton-engine"),
        ("same layer", lambda c: c["baton-model"]["dependencies"].append(dep("baton-events")), "baton-model (layer 0) depends on baton-events"),
        ("on the binary", lambda c: c["baton-bench"]["dependencies"].append(dep("baton-cli")), "baton-bench depends on baton-cli"),
        ("api not serde-only", lambda c: c["baton-api"]["dependencies"].append(dep("axum")), "baton-api depends on axum"),
        ("never", lambda c: c["baton-load"]["dependencies"].append(dep("baton-engine", "build")), "baton-load depends on baton-engine (build); never"),
        ("second binary", lambda c: c["baton-server"]["targets"].append({"name": "srv", "kind": ["bin"]}), "baton-server has a binary target"),
    ]
    for what, edit, expected in cases:
        new = planted(edit)
        assert any(expected in e for e in new), f"layers self-test ({what}): expected `{expected}`, got {new}"
    dev = planted(lambda c: c["baton-model"]["dependencies"].append(dep("baton-engine", "dev")))
    assert dev == [], f"layers self-test: a dev-dependency was judged: {dev}"

    # The codemap: drop a file's name from the text, add a file nobody named.
    before = check_codemap(text, files)
    more = copy.deepcopy(files)
    more.setdefault("engine", []).append("src/scheduler/planted.rs")
    more["engine"].append("src/planted/mod.rs")
    new = [e for e in check_codemap(text, more) if e not in before]
    assert sorted(new) == [
        "codemap: crates/engine/src/planted/mod.rs is not named in ARCHITECTURE.md's codemap",
        "codemap: crates/engine/src/scheduler/planted.rs is not named in ARCHITECTURE.md's codemap",
    ], new
    assert "`src/plan.rs`" in text, "layers self-test: the codemap no longer names `src/plan.rs`; pick another file"
    new = [e for e in check_codemap(text.replace("`src/plan.rs`", "`src/plan.txt`"), files) if e not in before]
    assert new == ["codemap: crates/plan/src/plan.rs is not named in ARCHITECTURE.md's codemap"], new
    # The convention: a file in a bullet that names its folder, a folder naming its mod.rs.
    sample = "## Codemap\n### `crates/x` — x\n- `src/a/`: `mod.rs` the data; `b.rs` one thing;\n  `c/` (`d.rs`)\n- `src/e/`: a folder\n- `f.rs` alone\n"
    got = check_codemap(sample, {"x": ["src/a/mod.rs", "src/a/b.rs", "src/a/c/d.rs", "src/e/mod.rs", "src/f.rs", "src/g/b.rs"]})
    assert got == [
        "codemap: crates/x/src/f.rs is not named in ARCHITECTURE.md's codemap",
        "codemap: crates/x/src/g/b.rs is not named in ARCHITECTURE.md's codemap",
    ], got
    # Circles: none today; a planted one between siblings, another around a loop
    # through `crate::` paths and a child named from its parent's file; an
    # ancestor named, a comment and a test module are no dependency.
    planted = {"x": {
        "src/lib.rs": "mod a;\nmod b;\nmod c;\n",
        "src/a/mod.rs": "mod d;\nmod e;\nuse d::X;\n",
        "src/a/d.rs": "use super::{e::Y, Shared};\n",
        "src/a/e.rs": "pub fn f() { super::d::g() }\n",
        "src/b.rs": "pub fn h() { crate::c::i() }\n// crate::a::d in a comment\n",
        "src/c.rs": "use crate::{a::Shared, self as _};\n#[cfg(test)]\nmod tests {\n    use crate::a::d;\n}\n",
    }}
    got = check_circles(planted)
    assert got == ["circle: crates/x: src/a/d.rs <-> src/a/e.rs (src/a/d.rs -> src/a/e.rs; src/a/e.rs -> src/a/d.rs)"], got
    planted["x"]["src/a/mod.rs"] += "pub fn k() { crate::b::h() }\n"
    planted["x"]["src/c.rs"] = "use crate::a::k;\n"
    got = check_circles(planted)
    assert any("src/a/mod.rs <-> src/b.rs <-> src/c.rs" in e for e in got), got
    print(f"layers self-test: ok ({len(cases)} planted dependency violations, 5 codemap omissions and 2 file circles caught)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata", type=Path, help="a saved `cargo metadata --format-version 1` output")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()

    metadata = json.loads(args.metadata.read_text()) if args.metadata else cargo_metadata()
    text = (ROOT / "ARCHITECTURE.md").read_text()
    files = source_files()
    if args.self_test:
        self_test(metadata, text, files)
        return 0
    errors = check_layers(metadata) + check_codemap(text, files) + check_circles(source_texts(files))
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        print(f"layers: {len(errors)} violation(s) of ARCHITECTURE.md", file=sys.stderr)
        return 1
    count = sum(len(f) for f in files.values())
    print(f"layers: dependencies point down, {API} is serde-only; the codemap names all {count} source files; no file circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())

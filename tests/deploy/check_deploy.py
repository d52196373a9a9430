#!/usr/bin/python3
"""Checks deploy/: YAML and JSON parse, shell scripts parse (bash -n), and every quantd metric
named in the alert rules and the Grafana dashboard is one the code exports (so dashboards never
silently go blank)."""
import json
import pathlib
import re
import subprocess
import sys

import yaml

root = pathlib.Path(sys.argv[1])
deploy = root / "deploy"
sources = "".join(p.read_text() for p in list((root / "server").rglob("*.cc")) +
                  list((root / "worker").rglob("*.cc")) + list((root / "worker").rglob("*.h")))
exported = set(re.findall(r'"(quantd_[a-z_]+)"', sources))
failures = []

documents = []
for path in sorted(deploy.rglob("*.yml")) + sorted(deploy.rglob("*.yaml")):
    try:
        documents.append((path, list(yaml.safe_load_all(path.read_text()))))
    except yaml.YAMLError as error:
        failures.append(f"{path}: not valid YAML: {error}")
scripts = sorted(deploy.rglob("*.sbatch")) + sorted(deploy.rglob("*.sh"))
for path in scripts:
    parsed = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    if parsed.returncode != 0:
        failures.append(f"{path}: bash cannot parse it: {parsed.stderr.strip()}")
dashboard_path = deploy / "grafana" / "quantd-dashboard.json"
dashboard = json.loads(dashboard_path.read_text())

expressions = []
for path, docs in documents:
    for doc in docs:
        for group in (doc or {}).get("groups", []) if isinstance(doc, dict) else []:
            for rule in group.get("rules", []):
                expressions.append((path, rule["expr"]))
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        expressions.append((dashboard_path, target["expr"]))

checked = 0
for path, expr in expressions:
    for name in re.findall(r"\b(quantd_[a-z_]+)", expr):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        checked += 1
        if name not in exported and base not in exported:
            failures.append(f"{path}: {name} is not exported by quantd or quantd-worker")

if failures:
    print("\n".join(failures))
    print(f"0 passed, {len(failures)} failed")
    sys.exit(1)
print(f"{len(documents)} YAML files, {len(scripts)} shell scripts, "
      f"{len(dashboard['panels'])} dashboard panels, {checked} metric references checked")

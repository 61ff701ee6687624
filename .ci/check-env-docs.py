#!/usr/bin/env python3
"""Every environment variable the code reads must be documented in the README.

Finds `env = "TENANTRY_…"` (clap), `secrets::from_env("TENANTRY_…")` and `std::env::var("TENANTRY_…")` in the Rust sources outside
tests and reports each name that README.md does not mention. Usage: python3 .ci/check-env-docs.py
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
pattern = re.compile(r'(?:env\s*=\s*|env::var\(\s*|from_env\(\s*)"((?:TENANTRY|OTEL)_[A-Z0-9_]+)"')
read = {}
for path in list(root.glob("crates/*/src/**/*.rs")) + list(root.glob("services/*/src/**/*.rs")):
    if "tests" in path.parts or path.name.endswith("tests.rs"):
        continue
    for name in pattern.findall(path.read_text()):
        read.setdefault(name, path.relative_to(root))
readme = (root / "README.md").read_text()
missing = sorted(name for name in read if name not in readme)
for name in missing:
    print(f"undocumented: {name} (read in {read[name]})")
print(f"{len(read)} environment variables read, {len(missing)} undocumented")
sys.exit(1 if missing else 0)

#!/usr/bin/env python3
"""Trims Plaid's published OpenAPI document (github.com/plaid/plaid-openapi,
2020-09-14.yml) to the operations the Plaid adapter calls, plus every
component schema they reference, into tests/contracts/plaid/plaid.json.

    python3 tests/contracts/plaid/extract_plaid.py /path/to/2020-09-14.yml "<source line>"

A separate script (not an option of extract.py) so the open banking slice
touches no shared file; it reuses extract.py's trimming.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import extract  # noqa: E402

# Keep in step with crates/adapters/src/openbanking/plaid.
PLAID_OPERATIONS = [
    ("/link/token/create", "post"),
    ("/link/token/get", "post"),
    ("/item/public_token/exchange", "post"),
    ("/accounts/get", "post"),
    ("/accounts/balance/get", "post"),
    ("/transactions/sync", "post"),
    ("/item/remove", "post"),
]
# Every non-2xx answer carries Plaid's error object.
PLAID_EXTRA_SCHEMAS = ["PlaidError"]


def bounds_31(node):
    """OpenAPI 3.0's boolean exclusiveMinimum/-Maximum (a modifier of
    minimum/maximum) as 3.1's (JSON Schema's) numeric bound; the contract
    tests validate with JSON Schema 2020-12. Nothing else changes."""
    if isinstance(node, dict):
        node = {k: bounds_31(v) for k, v in node.items()}
        for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if isinstance(node.get(flag), bool):
                if node.pop(flag) and bound in node:
                    node[flag] = node.pop(bound)
        return node
    if isinstance(node, list):
        return [bounds_31(v) for v in node]
    return node


def main():
    src, source = sys.argv[1], sys.argv[2]
    doc = extract.load(src)
    out = bounds_31(extract.trim(doc, PLAID_OPERATIONS, PLAID_EXTRA_SCHEMAS, source))
    with open(os.path.join(HERE, "plaid.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()

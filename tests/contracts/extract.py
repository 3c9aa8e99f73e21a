#!/usr/bin/env python3
"""Trims vendors' published OpenAPI documents to the operations switchyard
uses, plus every component schema they reference (transitively).

    python3 tests/contracts/extract.py \
        --stripe /path/to/stripe-openapi/openapi/spec3.yaml \
        --adyen-transfers /path/to/adyen-openapi/json/TransferService-v4.json \
        --adyen-webhooks /path/to/adyen-openapi/json/BalancePlatformTransferNotification-v4.json

writes tests/contracts/stripe/payouts.json,
tests/contracts/adyen/transfers-v4.json and
tests/contracts/adyen/transfer-webhooks-v4.json. Examples, descriptions
and other prose are dropped (they are not contract); everything that
validates (types, enums, required, nullable, anyOf, maxLength, ...) is kept
verbatim. Record the upstream commit in README.md when refreshing.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (path, method) pairs switchyard calls; keep in step with the adapters.
STRIPE_OPERATIONS = [
    ("/v1/payouts", "post"),
    ("/v1/payouts", "get"),
    ("/v1/payouts/{payout}", "get"),
    ("/v1/accounts/{account}/external_accounts", "post"),
]
# Schemas used outside the operations: the error envelope every non-2xx
# carries, and the event envelope of webhooks (payout.* carry a payout).
STRIPE_EXTRA_SCHEMAS = ["error", "event", "payout"]

ADYEN_OPERATIONS = [
    ("/transfers", "post"),
    ("/transfers", "get"),
    ("/transfers/{id}", "get"),
]
ADYEN_EXTRA_SCHEMAS = ["ServiceError", "RestServiceError"]
ADYEN_WEBHOOKS = ["balancePlatform.transfer.created", "balancePlatform.transfer.updated"]

# Prose and tooling keys that never affect validation.
DROP_KEYS = {"description", "examples", "example", "summary", "x-expansionResources", "x-stripeBypassValidation",
             "x-stripeResource", "x-stripeOperations", "x-codegen", "x-addedInVersion", "x-sortIndex", "x-methodName",
             "externalDocs", "x-enum-descriptions"}


def load(path):
    with open(path, encoding="utf-8") as f:
        if path.endswith((".yaml", ".yml")):
            import yaml  # PyYAML; only needed for YAML sources
            return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return json.load(f)


def strip(node, names=False):
    """Drops prose keys; under `properties` the keys are field names, kept."""
    if isinstance(node, dict):
        if names:
            return {k: strip(v) for k, v in node.items()}
        return {k: strip(v, names=(k == "properties")) for k, v in node.items() if k not in DROP_KEYS}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node, out):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str):
            out.add(r)
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def resolve_pointer(doc, ref):
    if not ref.startswith("#/"):
        sys.exit(f"external $ref not supported: {ref}")
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def closure(doc, roots):
    """Every component reachable from `roots` through $ref."""
    seen, todo = set(), set()
    refs(roots, todo)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        refs(resolve_pointer(doc, ref), todo)
    components = {}
    for ref in sorted(seen):
        _, section, kind, name = ref.split("/", 3)
        assert section == "components", ref
        components.setdefault(kind, {})[name] = strip(resolve_pointer(doc, ref))
    return components


def trim(doc, operations, extra_schemas, source, webhooks=()):
    paths = {}
    for path, method in operations:
        op = doc["paths"][path][method]
        paths.setdefault(path, {})[method] = strip(op)
        shared = doc["paths"][path].get("parameters")
        if shared:
            paths[path]["parameters"] = strip(shared)
    hooks = {name: strip(doc["webhooks"][name]) for name in webhooks}
    roots = [paths, hooks, [{"$ref": f"#/components/schemas/{s}"} for s in extra_schemas]]
    out = {
        "openapi": doc["openapi"],
        "info": {"title": doc["info"]["title"], "version": doc["info"]["version"]},
        "x-switchyard-source": source,
        "paths": paths,
    }
    if hooks:
        out["webhooks"] = hooks
        del out["paths"]
    out["components"] = closure(doc, roots)
    return out


def write(obj, rel):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    n = sum(len(v) for v in obj["components"].values())
    print(f"{rel}: {n} components, {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stripe", help="stripe/openapi openapi/spec3.json or spec3.yaml")
    ap.add_argument("--stripe-source", default="stripe/openapi openapi/spec3.yaml")
    ap.add_argument("--adyen-transfers", help="Adyen/adyen-openapi json/TransferService-v4.json")
    ap.add_argument("--adyen-webhooks", help="Adyen/adyen-openapi json/BalancePlatformTransferNotification-v4.json")
    ap.add_argument("--adyen-source", default="Adyen/adyen-openapi")
    a = ap.parse_args()
    if a.stripe:
        write(trim(load(a.stripe), STRIPE_OPERATIONS, STRIPE_EXTRA_SCHEMAS, a.stripe_source), "stripe/payouts.json")
    if a.adyen_transfers:
        src = f"{a.adyen_source} json/TransferService-v4.json"
        write(trim(load(a.adyen_transfers), ADYEN_OPERATIONS, ADYEN_EXTRA_SCHEMAS, src), "adyen/transfers-v4.json")
    if a.adyen_webhooks:
        src = f"{a.adyen_source} json/BalancePlatformTransferNotification-v4.json"
        write(trim(load(a.adyen_webhooks), [], [], src, ADYEN_WEBHOOKS), "adyen/transfer-webhooks-v4.json")


if __name__ == "__main__":
    main()

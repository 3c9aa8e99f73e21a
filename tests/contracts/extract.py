#!/usr/bin/env python3
"""Trims vendors' published OpenAPI documents to the operations switchyard
uses, plus every component schema they reference (transitively).

    python3 tests/contracts/extract.py \
        --stripe /path/to/stripe-openapi/latest/openapi.spec3.json \
        --adyen-transfers /path/to/adyen-openapi/json/TransferService-v4.json \
        --adyen-webhooks /path/to/adyen-openapi/json/BalancePlatformTransferNotification-v4.json \
        --onfido /path/to/onfido-openapi-spec/generated/artifacts/openapi/openapi.json \
        --opensanctions /path/to/yente-openapi.json

writes stripe/payouts.json, adyen/transfers-v4.json,
adyen/transfer-webhooks-v4.json, onfido/v3.6.json and
opensanctions/match.json (and marqeta/core.json with --marqeta) under tests/contracts/ (each only for the
documents given). Examples, descriptions and other prose are dropped (they
are not contract); everything that validates (types, enums, required,
nullable, anyOf, maxLength, ...) is kept verbatim, except the Stripe
components in STRIPE_STUBS, which become open objects (see there).
Record the upstream commit in README.md when refreshing.
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
# Components left as open stubs instead of being followed: the objects an
# expandable field returns only when `expand[]` asks for them (switchyard never
# expands, so it only ever sees their string ids), the objects an error
# embeds for card and payment-intent failures, and the card's network list.
# Following them pulls in most of Stripe's API (megabytes); a stub accepts
# any object, so it can hide nothing switchyard's calls produce.
STRIPE_STUBS = {
    "account": "expandable (account id)",
    "application_fee": "expandable (fee id)",
    "balance_transaction": "expandable (balance transaction id)",
    "customer": "expandable (customer id)",
    "deleted_bank_account": "expandable (payout.destination id)",
    "deleted_card": "expandable (payout.destination id)",
    "deleted_customer": "expandable (customer id)",
    "payment_intent": "embedded in payment errors only",
    "payment_method": "embedded in payment errors only",
    "setup_intent": "embedded in setup errors only",
    "source": "embedded in source errors only",
    "token_card_networks": "card networks; switchyard registers bank accounts only",
}

ADYEN_OPERATIONS = [
    ("/transfers", "post"),
    ("/transfers", "get"),
    ("/transfers/{id}", "get"),
]
ADYEN_EXTRA_SCHEMAS = ["ServiceError", "RestServiceError"]
ADYEN_WEBHOOKS = ["balancePlatform.transfer.created", "balancePlatform.transfer.updated"]

# Onfido API v3.6 (crates/adapters/src/kyc/onfido): the KYC flow and the
# webhook body (`webhook_event`; Onfido declares it as a schema, not under
# `webhooks`).
ONFIDO_OPERATIONS = [
    ("/applicants", "post"),
    ("/documents", "post"),
    ("/live_photos", "post"),
    ("/checks", "post"),
    ("/checks/{check_id}", "get"),
    ("/reports", "get"),
]
ONFIDO_EXTRA_SCHEMAS = ["Error", "webhook_event"]

# OpenSanctions / yente (crates/adapters/src/aml/open_sanctions): the
# matching API; yente serves this document at /openapi.json (OpenAPI 3.1).
OPENSANCTIONS_OPERATIONS = [("/match/{dataset}", "post")]
OPENSANCTIONS_EXTRA_SCHEMAS = ["ErrorResponse"]

# Marqeta Core API (crates/adapters/src/cards/marqeta): a Swagger 2.0
# document, converted mechanically to the OpenAPI 3 shape the contract tests
# read (see swagger2_to_openapi3). Served under `/v3`.
MARQETA_OPERATIONS = [
    ("/cards", "post"),
    ("/cards/{token}", "get"),
    ("/cardtransitions", "post"),
    ("/pins/controltoken", "post"),
    ("/pins", "put"),
    ("/digitalwalletprovisionrequests/applepay", "post"),
    ("/digitalwalletprovisionrequests/androidpay", "post"),
    ("/chargebacks", "post"),
    ("/chargebacks/{token}", "get"),
    ("/chargebacks/transitions", "post"),
    # The issuer's side of a wallet token held for step-up (DECISION_YELLOW):
    # it makes the token ACTIVE, and reads a card's tokens.
    ("/digitalwallettokentransitions", "post"),
    ("/digitalwallettokens/card/{card_token}", "get"),
]
# Webhook bodies: Marqeta sends the transition objects of these schemas.
MARQETA_EXTRA_SCHEMAS = ["card_transition_response", "digital_wallet_token_transition_response", "chargeback_transition_response", "transaction_model"]

# Lithic (crates/adapters/src/cards/lithic, crates/simulators/src/lithic.rs):
# github.com/lithic-com/lithic-openapi lithic-openapi.yml (OpenAPI 3.1, YAML).
# Operations and the webhook bodies the simulator sends; the document keeps
# both `paths` and `webhooks`, so the fixture does too (trim_lithic).
LITHIC_OPERATIONS = [
    ("/v1/cards", "post"),
    ("/v1/cards", "get"),
    ("/v1/cards/{card_token}", "get"),
    ("/v1/cards/{card_token}", "patch"),
    ("/v1/cards/{card_token}/reissue", "post"),
    ("/v1/cards/{card_token}/provision", "post"),
    ("/v1/disputes", "post"),
    ("/v1/disputes/{dispute_token}", "get"),
    ("/v1/disputes/{dispute_token}/evidences", "post"),
]
LITHIC_EXTRA_SCHEMAS = ["error"]
LITHIC_WEBHOOKS = ["card.created", "card.shipped", "card.updated", "card.reissued", "dispute.updated", "card_transaction.updated"]


def trim_lithic(doc, source):
    out = trim(doc, LITHIC_OPERATIONS, LITHIC_EXTRA_SCHEMAS, source)
    hooks = {name: strip(doc["webhooks"][name]) for name in LITHIC_WEBHOOKS}
    out["webhooks"] = hooks
    roots = [out["paths"], hooks, [{"$ref": f"#/components/schemas/{s}"} for s in LITHIC_EXTRA_SCHEMAS]]
    out["components"] = closure(doc, roots)
    return out


# Prose and tooling keys that never affect validation.
DROP_KEYS = {"description", "examples", "example", "summary", "x-expansionResources",
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


def closure(doc, roots, stubs=None):
    """Every component reachable from `roots` through $ref; the schemas named
    in `stubs` become open objects and are not followed."""
    stubs = stubs or {}
    stub_refs = {f"#/components/schemas/{name}" for name in stubs}
    seen, todo = set(), set()
    refs(roots, todo)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if ref not in stub_refs:
            refs(resolve_pointer(doc, ref), todo)
    components = {}
    for ref in sorted(seen):
        _, section, kind, name = ref.split("/", 3)
        assert section == "components", ref
        if ref in stub_refs:
            components.setdefault(kind, {})[name] = {"type": "object", "x-switchyard-stub": stubs[name]}
        else:
            components.setdefault(kind, {})[name] = strip(resolve_pointer(doc, ref))
    return components


def trim(doc, operations, extra_schemas, source, webhooks=(), stubs=None):
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
    out["components"] = closure(doc, roots, stubs)
    return out


def swagger2_to_openapi3(doc, operations):
    """A Swagger 2.0 document's `operations` in OpenAPI 3 form: `definitions`
    become `components.schemas` (and every $ref with them), a `body`
    parameter becomes `requestBody` (application/json), other parameters
    keep name/in/required with their type under `schema`, and a response
    schema moves under `content.application/json`, and boolean
    exclusiveMinimum/exclusiveMaximum become 3.1's numeric bounds. Nothing
    else changes."""
    def fix(node):
        if isinstance(node, dict):
            node = dict(node)
            # Swagger's boolean exclusiveMinimum/-Maximum modify minimum/maximum;
            # OpenAPI 3.1 (JSON Schema) makes them the bound itself.
            for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
                if isinstance(node.get(flag), bool):
                    if node.pop(flag) and bound in node:
                        node[flag] = node.pop(bound)
            return {k: (v.replace("#/definitions/", "#/components/schemas/") if k == "$ref" and isinstance(v, str) else fix(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node
    paths = {}
    for path, method in operations:
        op = doc["paths"][path][method]
        new = {k: v for k, v in op.items() if k not in ("parameters", "responses", "consumes", "produces")}
        params = []
        for p in op.get("parameters", []):
            if p.get("in") == "body":
                new["requestBody"] = {"content": {"application/json": {"schema": p["schema"]}}}
            else:
                schema = {k: v for k, v in p.items() if k not in ("name", "in", "required", "description")}
                params.append({"name": p["name"], "in": p["in"], "required": p.get("required", False), "schema": schema})
        if params:
            new["parameters"] = params
        responses = {}
        for status, r in op.get("responses", {}).items():
            out = {k: v for k, v in r.items() if k != "schema"}
            if "schema" in r:
                out["content"] = {"application/json": {"schema": r["schema"]}}
            responses[status] = out
        new["responses"] = responses
        paths.setdefault(path, {})[method] = new
    return fix({
        "openapi": "3.1.0",
        "info": doc["info"],
        "paths": paths,
        "components": {"schemas": doc.get("definitions", {})},
    })


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
    ap.add_argument("--stripe", help="stripe/openapi latest/openapi.spec3.json (or openapi/spec3.json, .yaml)")
    ap.add_argument("--stripe-source", default="stripe/openapi latest/openapi.spec3.json")
    ap.add_argument("--adyen-transfers", help="Adyen/adyen-openapi json/TransferService-v4.json")
    ap.add_argument("--adyen-webhooks", help="Adyen/adyen-openapi json/BalancePlatformTransferNotification-v4.json")
    ap.add_argument("--adyen-source", default="Adyen/adyen-openapi")
    ap.add_argument("--onfido", help="onfido/onfido-openapi-spec generated/artifacts/openapi/openapi.json")
    ap.add_argument("--onfido-source", default="onfido/onfido-openapi-spec generated/artifacts/openapi/openapi.json")
    ap.add_argument("--opensanctions", help="the OpenAPI document yente serves at /openapi.json")
    ap.add_argument("--opensanctions-source", default="yente /openapi.json")
    ap.add_argument("--marqeta", help="Marqeta Core API swagger.json (Swagger 2.0, /v3/swagger.json)")
    ap.add_argument("--marqeta-source", default="Marqeta Core API /v3/swagger.json")
    ap.add_argument("--lithic", help="lithic-com/lithic-openapi lithic-openapi.yml")
    ap.add_argument("--lithic-source", default="lithic-com/lithic-openapi lithic-openapi.yml")
    a = ap.parse_args()
    if a.stripe:
        write(trim(load(a.stripe), STRIPE_OPERATIONS, STRIPE_EXTRA_SCHEMAS, a.stripe_source, stubs=STRIPE_STUBS), "stripe/payouts.json")
    if a.adyen_transfers:
        src = f"{a.adyen_source} json/TransferService-v4.json"
        write(trim(load(a.adyen_transfers), ADYEN_OPERATIONS, ADYEN_EXTRA_SCHEMAS, src), "adyen/transfers-v4.json")
    if a.adyen_webhooks:
        src = f"{a.adyen_source} json/BalancePlatformTransferNotification-v4.json"
        write(trim(load(a.adyen_webhooks), [], [], src, ADYEN_WEBHOOKS), "adyen/transfer-webhooks-v4.json")
    if a.lithic:
        write(trim_lithic(load(a.lithic), a.lithic_source), "lithic/cards.json")
    if a.onfido:
        write(trim(load(a.onfido), ONFIDO_OPERATIONS, ONFIDO_EXTRA_SCHEMAS, a.onfido_source), "onfido/v3.6.json")
    if a.opensanctions:
        src = a.opensanctions_source
        write(trim(load(a.opensanctions), OPENSANCTIONS_OPERATIONS, OPENSANCTIONS_EXTRA_SCHEMAS, src), "opensanctions/match.json")

    if a.marqeta:
        converted = swagger2_to_openapi3(load(a.marqeta), MARQETA_OPERATIONS)
        ops = [(path, method) for path, method in MARQETA_OPERATIONS]
        out = trim(converted, ops, MARQETA_EXTRA_SCHEMAS, a.marqeta_source)
        out["x-switchyard-converted-from"] = "swagger 2.0 (extract.py swagger2_to_openapi3)"
        write(out, "marqeta/core.json")


if __name__ == "__main__":
    main()

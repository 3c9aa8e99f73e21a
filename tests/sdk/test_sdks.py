#!/usr/bin/env python3
"""The vendors' official SDKs against `switchyard sandbox`.

usage: test_sdks.py MANIFEST

MANIFEST is the JSON file `switchyard sandbox --manifest FILE` writes: each
vendor's base URL, credentials and webhook URL and secret. The sandbox must
send its webhooks to this script's receiver, which listens on the port of
the Stripe webhook URL, e.g.

    switchyard sandbox --manifest /tmp/sandbox.json \\
        --webhook-url 'all=http://127.0.0.1:12199/{vendor}' &
    python3 tests/sdk/test_sdks.py /tmp/sandbox.json

Per SDK (stripe, Adyen, onfido-python, pinned in requirements.txt): create,
retrieve, replay with the same idempotency key (the same object back), a
key reused with another body, a key reused while the first request is in
flight, a declined case (the simulators' magic inputs), an injected fault,
and the sandbox's webhooks verified with the vendor's own helper
(stripe.Webhook.construct_event, Adyen.util.is_valid_hmac_payload, onfido's
WebhookEventVerifier). Whatever an SDK rejects is a simulator bug.
Exits non-zero when any check fails.
"""
import json
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import Adyen
import Adyen.util
from Adyen.exceptions import AdyenAPIResponseError, AdyenAPIUnprocessableEntity
import onfido
import stripe
from onfido.webhook_event_verifier import OnfidoInvalidSignatureError, WebhookEventVerifier

WEBHOOK_WAIT_S = 20


class Receiver:
    """Collects every webhook delivery: (vendor, headers, raw body)."""

    def __init__(self, port):
        self.deliveries = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                vendor = self.path.strip("/").split("/")[-1]
                with receiver.cond:
                    receiver.deliveries.append((vendor, dict(self.headers), body))
                    receiver.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, vendor, predicate, what):
        """The first delivery for `vendor` whose parsed body satisfies `predicate`."""
        deadline = time.monotonic() + WEBHOOK_WAIT_S
        with self.cond:
            while True:
                for v, headers, body in self.deliveries:
                    if v == vendor and predicate(json.loads(body)):
                        return headers, body
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [json.loads(b).get("type") or json.loads(b).get("payload", {}).get("action") for v, _, b in self.deliveries if v == vendor]
                    raise AssertionError(f"no {vendor} webhook {what} within {WEBHOOK_WAIT_S}s; got {seen}")
                self.cond.wait(left)


def header(headers, name):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    raise AssertionError(f"webhook without {name}: {sorted(headers)}")


def set_faults(base_url, plan):
    """The simulator's control route: PUT /_sim/faults with a FaultPlan."""
    req = urllib.request.Request(f"{base_url}/_sim/faults", data=json.dumps(plan).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def race(call):
    """Runs `call` twice at once, the second a little later, so the first is
    admitted (and held by the injected latency) when the second arrives.
    Returns (the result, the exception) in either order of arrival; fails
    unless exactly one of the two raised."""
    out = [None, None]

    def run(i):
        try:
            out[i] = call()
        except Exception as e:  # noqa: BLE001 - the caller inspects it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for t in threads:
        t.join(30)
    raised = [o for o in out if isinstance(o, Exception)]
    assert len(raised) == 1, f"expected one success and one refusal, got {out!r}"
    return next(o for o in out if not isinstance(o, Exception)), raised[0]


def key():
    return f"sdk-{uuid.uuid4()}"


# ---------------------------------------------------------------- Stripe


class StripeChecks:
    def __init__(self, vendor, receiver):
        self.url = vendor["url"]
        self.secret = vendor["webhook"]["secret"]
        self.receiver = receiver
        # No retries: a 409 or 5xx must reach the test, not be retried away.
        self.client = stripe.StripeClient(vendor["credentials"]["api_key"], base_addresses={"api": self.url}, max_network_retries=0)

    def create(self, amount=1500, idempotency_key=None, **extra):
        params = {"amount": amount, "currency": "eur", "metadata": {"switchyard_payout_id": f"po-{uuid.uuid4().hex[:8]}"}, **extra}
        options = {"idempotency_key": idempotency_key} if idempotency_key else {}
        return self.client.v1.payouts.create(params=params, options=options)

    def check_create_and_retrieve(self):
        payout = self.create(description="sdk create")
        assert payout.object == "payout" and payout.id.startswith("po_"), payout
        assert (payout.amount, payout.currency, payout.status) == (1500, "eur", "pending"), payout
        again = self.client.v1.payouts.retrieve(payout.id)
        assert (again.id, again.amount, again.description) == (payout.id, 1500, "sdk create"), again
        listed = self.client.v1.payouts.list(params={"limit": 3})
        assert any(p.id == payout.id for p in listed.data), listed

    def check_replay_same_key(self):
        k = key()
        first = self.create(idempotency_key=k)
        second = self.create(idempotency_key=k, metadata=first.metadata.to_dict())
        assert second.id == first.id, (first.id, second.id)
        assert second.last_response.headers.get("Idempotent-Replayed") == "true", dict(second.last_response.headers)

    def check_conflicting_reuse_of_a_key(self):
        k = key()
        self.create(idempotency_key=k)
        try:
            self.create(amount=9999, idempotency_key=k)
        except stripe.IdempotencyError as e:
            assert e.http_status == 400 and e.error.type == "idempotency_error", e
        else:
            raise AssertionError("a key reused with another amount was accepted")

    def check_key_reused_while_in_flight(self):
        k, meta = key(), {"switchyard_payout_id": "po-inflight"}
        set_faults(self.url, {"latency_ms": 1500})
        try:
            a, b = race(lambda: self.create(idempotency_key=k, metadata=meta))
        finally:
            set_faults(self.url, {})
        assert isinstance(a, stripe.StripeObject) and a.object == "payout", a
        assert isinstance(b, stripe.StripeError) and b.http_status == 409 and b.error.type == "idempotency_error", repr(b)

    def check_connect_payout_to_an_external_account(self):
        account = f"acct_1Sdk{uuid.uuid4().hex[:12]}"
        bank = self.client.v1.accounts.external_accounts.create(account, params={"external_account": {
            "object": "bank_account", "country": "DE", "currency": "eur", "account_number": "DE89370400440532013000",
            "account_holder_name": "A. Beneficiary", "account_holder_type": "individual"}})
        assert (bank.object, bank.account, bank.last4, bank.currency) == ("bank_account", account, "3000", "eur"), bank
        on_behalf = {"stripe_account": account, "idempotency_key": key()}
        payout = self.client.v1.payouts.create(params={"amount": 700, "currency": "eur", "destination": bank.id}, options=on_behalf)
        assert (payout.destination, payout.amount) == (bank.id, 700), payout
        again = self.client.v1.payouts.retrieve(payout.id, options={"stripe_account": account})
        assert again.id == payout.id, again
        try:
            self.client.v1.payouts.retrieve(payout.id)  # the platform cannot see a connected account's payout
        except stripe.InvalidRequestError as e:
            assert (e.http_status, e.code) == (404, "resource_missing"), e
        else:
            raise AssertionError("the platform retrieved a connected account's payout")

    def check_declined(self):
        try:
            self.create(amount=40402)
        except stripe.InvalidRequestError as e:
            assert (e.http_status, e.code) == (400, "balance_insufficient"), e
        else:
            raise AssertionError("the magic amount 40402 was not declined")

    def check_injected_faults_are_stripe_errors(self):
        set_faults(self.url, {"unavailable_ratio": 1.0})
        try:
            self.create()
        except stripe.APIError as e:
            assert e.http_status == 503, e
        else:
            raise AssertionError("no 503 under unavailable_ratio 1.0")
        finally:
            set_faults(self.url, {})
        set_faults(self.url, {"rate_limit_ratio": 1.0, "retry_after_secs": 1})
        try:
            self.client.v1.payouts.retrieve("po_missing")
        except stripe.RateLimitError as e:
            assert e.http_status == 429, e
        else:
            raise AssertionError("no 429 under rate_limit_ratio 1.0")
        finally:
            set_faults(self.url, {})

    def check_webhooks_verify_with_construct_event(self):
        paid = self.create(amount=2500)
        failed = self.create(amount=40422)  # executes, then fails: account_closed
        for payout, kinds in ((paid, ("payout.created", "payout.paid")), (failed, ("payout.created", "payout.failed"))):
            for kind in kinds:
                headers, body = self.receiver.wait_for(
                    "stripe", lambda e: e.get("type") == kind and e["data"]["object"]["id"] == payout.id, f"{kind} for {payout.id}")
                event = stripe.Webhook.construct_event(body.decode(), header(headers, "Stripe-Signature"), self.secret)
                assert (event.type, event.data.object.id, event.data.object.object) == (kind, payout.id, "payout"), event
                if kind == "payout.failed":
                    assert event.data.object.failure_code == "account_closed", event
        try:
            stripe.Webhook.construct_event(body.decode().replace("payout", "refund", 1), header(headers, "Stripe-Signature"), self.secret)
        except stripe.SignatureVerificationError:
            pass
        else:
            raise AssertionError("a tampered Stripe webhook verified")


# ----------------------------------------------------------------- Adyen


class AdyenChecks:
    def __init__(self, vendor, receiver):
        self.url = vendor["url"]
        self.hmac_key = vendor["webhook"]["secret"]
        self.balance_account = vendor["credentials"]["balance_account_id"]
        self.receiver = receiver
        self.adyen = Adyen.Adyen(xapikey=vendor["credentials"]["x_api_key"], platform="test")
        self.transfers = self.adyen.transfers.transfers_api
        # The generated service's base URL: the documented way to aim it elsewhere.
        self.transfers.baseUrl = f"{self.url}/btl/v4"

    def request(self, value=1500, reference=None):
        return {
            "amount": {"currency": "EUR", "value": value},
            "balanceAccountId": self.balance_account,
            "category": "bank",
            "priority": "regular",
            "reference": reference or f"po-{uuid.uuid4().hex[:12]}",
            "counterparty": {"bankAccount": {
                "accountHolder": {"fullName": "A. Beneficiary"},
                "accountIdentification": {"type": "iban", "iban": "NL91ABNA0417164300"},
            }},
        }

    def check_create_and_retrieve(self):
        created = self.transfers.transfer_funds(self.request(), idempotency_key=key())
        t = created.message
        assert created.status_code == 200 and t["status"] == "authorised" and t["amount"]["value"] == 1500, t
        got = self.transfers.get_transfer(t["id"]).message
        assert (got["id"], got["reference"], got["amount"]) == (t["id"], t["reference"], t["amount"]), got
        assert created.psp, "no pspReference header"

    def check_replay_same_key(self):
        k, req = key(), self.request()
        first = self.transfers.transfer_funds(req, idempotency_key=k).message
        second = self.transfers.transfer_funds(req, idempotency_key=k).message
        assert first == second, (first, second)

    def check_conflicting_reuse_of_a_key(self):
        k = key()
        self.transfers.transfer_funds(self.request(), idempotency_key=k)
        try:
            self.transfers.transfer_funds(self.request(value=9999), idempotency_key=k)
        except AdyenAPIUnprocessableEntity as e:
            assert (e.status_code, e.error_code) == (422, "704"), e.debug()
        else:
            raise AssertionError("a key reused with another body was accepted")

    def check_key_reused_while_in_flight(self):
        k, req = key(), self.request()
        set_faults(self.url, {"latency_ms": 1500})
        try:
            a, b = race(lambda: self.transfers.transfer_funds(req, idempotency_key=k))
        finally:
            set_faults(self.url, {})
        assert a.message["status"] == "authorised", a
        assert isinstance(b, AdyenAPIResponseError) and (b.status_code, b.error_code) == (409, "704"), repr(b)

    def check_list_finds_a_transfer_by_reference(self):
        reference = f"po-{uuid.uuid4().hex[:12]}"
        t = self.transfers.transfer_funds(self.request(reference=reference), idempotency_key=key()).message
        now = time.time()
        window = {"createdSince": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
                  "createdUntil": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))}
        page = self.transfers.get_all_transfers(query_parameters={"balanceAccountId": self.balance_account, "reference": reference, **window}).message
        assert [x["id"] for x in page["data"]] == [t["id"]], page

    def check_declined(self):
        t = self.transfers.transfer_funds(self.request(value=40402), idempotency_key=key()).message
        assert (t["status"], t["reason"]) == ("refused", "notEnoughBalance"), t

    def check_injected_faults_are_adyen_errors(self):
        set_faults(self.url, {"server_error_ratio": 1.0, "seed": 2})
        try:
            self.transfers.get_transfer("missing")
        except AdyenAPIResponseError as e:
            assert e.status_code in (500, 503) and e.error_code in ("00_500", "00_503"), e.debug()
        else:
            raise AssertionError("no 5xx under server_error_ratio 1.0")
        finally:
            set_faults(self.url, {})

    def check_webhooks_verify_with_hmac_validator(self):
        t = self.transfers.transfer_funds(self.request(value=2600), idempotency_key=key()).message
        for kind, status in (("balancePlatform.transfer.created", "authorised"), ("balancePlatform.transfer.updated", "booked")):
            headers, body = self.receiver.wait_for(
                "adyen", lambda e: e.get("type") == kind and e["data"]["id"] == t["id"], f"{kind} for {t['id']}")
            assert Adyen.util.is_valid_hmac_payload(header(headers, "HmacSignature"), self.hmac_key, body), "HMAC did not verify"
            event = json.loads(body)
            assert event["data"]["status"] == status and event["environment"] == "test", event
        assert not Adyen.util.is_valid_hmac_payload(header(headers, "HmacSignature"), self.hmac_key, body.replace(b"booked", b"failed"))


# ---------------------------------------------------------------- Onfido


class OnfidoChecks:
    def __init__(self, vendor, receiver):
        self.url = vendor["url"]
        self.token = vendor["webhook"]["secret"]
        self.receiver = receiver
        config = onfido.Configuration(api_token=vendor["credentials"]["api_token"], host=f"{self.url}/v3.6")
        self.api = onfido.DefaultApi(onfido.ApiClient(config))

    def applicant(self, last_name="Sandbox", idempotency_key=None, first_name="Ada"):
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        builder = onfido.ApplicantBuilder(first_name=first_name, last_name=last_name, email="ada@example.com")
        return self.api.create_applicant(builder, _headers=headers)

    def checked(self, last_name):
        """An applicant with a passport uploaded and a document check."""
        a = self.applicant(last_name=last_name)
        doc = self.api.upload_document("passport", a.id, ("passport.jpg", b"\xff\xd8 a passport " * 200), side="front", issuing_country="GBR")
        assert (doc.applicant_id, doc.type.value, doc.side) == (a.id, "passport", "front"), doc
        check = self.api.create_check(onfido.CheckBuilder(applicant_id=a.id, report_names=[onfido.ReportName.DOCUMENT], document_ids=[doc.id]))
        assert check.applicant_id == a.id and check.status == "in_progress", check
        return a, check

    def finished(self, check_id):
        deadline = time.monotonic() + WEBHOOK_WAIT_S
        while True:
            check = self.api.find_check(check_id)
            if check.status != "in_progress" or time.monotonic() > deadline:
                return check
            time.sleep(0.2)

    def check_create_and_retrieve(self):
        a, check = self.checked("Sandbox")
        assert a.first_name == "Ada" and a.created_at is not None, a
        done = self.finished(check.id)
        assert (done.id, done.status, done.result) == (check.id, "complete", "clear"), done
        reports = self.api.list_reports(check.id).reports
        assert len(reports) == 1, reports
        report = reports[0].actual_instance
        assert (report.name.value, report.result.value, str(report.check_id or check.id)) == ("document", "clear", str(check.id)), report
        assert str(report.id) in [str(r) for r in done.report_ids], (report.id, done.report_ids)

    def check_replay_same_key(self):
        k = key()
        first = self.applicant(idempotency_key=k)
        second = self.applicant(idempotency_key=k)
        assert first.id == second.id, (first.id, second.id)

    def check_conflicting_reuse_of_a_key(self):
        k = key()
        self.applicant(idempotency_key=k)
        try:
            self.applicant(idempotency_key=k, first_name="Grace")
        except onfido.ApiException as e:
            assert e.status == 409 and json.loads(e.body)["error"]["type"] == "idempotency_error", e
        else:
            raise AssertionError("a key reused with another body was accepted")

    def check_key_reused_while_in_flight(self):
        k = key()
        set_faults(self.url, {"latency_ms": 1500})
        try:
            a, b = race(lambda: self.applicant(idempotency_key=k))
        finally:
            set_faults(self.url, {})
        assert isinstance(a, onfido.Applicant), a
        assert isinstance(b, onfido.ApiException) and b.status == 409, repr(b)

    def check_declined(self):
        _, check = self.checked("Forged")
        done = self.finished(check.id)
        assert (done.status, done.result) == ("complete", "consider"), done
        report = self.api.list_reports(check.id).reports[0].actual_instance
        assert (report.result.value, report.sub_result.value) == ("consider", "rejected"), report

    def check_face_report_and_reports_while_pending(self):
        a = self.applicant(last_name="Sandbox")
        self.api.upload_document("passport", a.id, ("passport.jpg", b"\xff\xd8 a passport " * 200), side="front", issuing_country="GBR")
        photo = self.api.upload_live_photo(a.id, ("selfie.jpg", b"\xff\xd8 a mismatch selfie " * 200))
        assert photo.id and photo.file_name, photo
        names = [onfido.ReportName.DOCUMENT, onfido.ReportName.FACIAL_SIMILARITY_PHOTO]
        check = self.api.create_check(onfido.CheckBuilder(applicant_id=a.id, report_names=names))
        pending = [r.actual_instance for r in self.api.list_reports(check.id).reports]
        assert sorted(r.name.value for r in pending) == ["document", "facial_similarity_photo"], pending
        assert all(r.status.value == "awaiting_data" for r in pending), pending
        done = self.finished(check.id)
        assert (done.status, done.result) == ("complete", "consider"), done
        reports = {r.actual_instance.name.value: r.actual_instance for r in self.api.list_reports(check.id).reports}
        face = reports["facial_similarity_photo"]
        assert (face.result.value, face.breakdown.face_comparison.result) == ("consider", "consider"), face
        assert reports["document"].result.value == "clear", reports["document"]

    def check_step_up_waits_for_the_applicant(self):
        _, check = self.checked("StepUp")
        done = self.finished(check.id)
        assert (done.status, done.result) == ("awaiting_applicant", None), done

    def check_injected_faults_are_onfido_errors(self):
        set_faults(self.url, {"unavailable_ratio": 1.0})
        try:
            self.applicant()
        except onfido.ApiException as e:
            assert e.status == 503, e
        else:
            raise AssertionError("no 503 under unavailable_ratio 1.0")
        finally:
            set_faults(self.url, {})

    def check_webhooks_verify_with_webhook_event_verifier(self):
        _, check = self.checked("Sandbox")
        headers, body = self.receiver.wait_for(
            "onfido", lambda e: e["payload"]["object"]["id"] == str(check.id), f"check.completed for {check.id}")
        event = WebhookEventVerifier(self.token).read_payload(body.decode(), header(headers, "X-SHA2-Signature"))
        p = event.payload
        assert (p.resource_type.value, p.action.value, p.object.id, p.object.status.value) == ("check", "check.completed", str(check.id), "complete"), p
        try:
            WebhookEventVerifier(self.token).read_payload(body.decode().replace("complete", "withdrawn", 1), header(headers, "X-SHA2-Signature"))
        except OnfidoInvalidSignatureError:
            pass
        else:
            raise AssertionError("a tampered Onfido webhook verified")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    manifest = json.load(open(sys.argv[1]))
    vendors = manifest["vendors"]
    urls = [v["webhook"]["url"] for v in vendors.values() if v.get("webhook") and v["webhook"].get("url")]
    ports = {urllib.parse.urlsplit(u).port for u in urls}
    if len(urls) < 3 or len(ports) != 1:
        sys.exit(f"the sandbox must send stripe, adyen and onfido webhooks to one receiver port; got {urls}")
    receiver = Receiver(ports.pop())
    suites = [StripeChecks(vendors["stripe"], receiver), AdyenChecks(vendors["adyen"], receiver), OnfidoChecks(vendors["onfido"], receiver)]
    versions = f"stripe {stripe.VERSION}, Adyen {Adyen.settings.LIB_VERSION}, onfido-python {onfido.__version__}"
    print(f"official SDKs: {versions}")
    passed, failed = 0, []
    for suite in suites:
        for name in sorted(n for n in dir(suite) if n.startswith("check_")):
            label = f"{type(suite).__name__.removesuffix('Checks').lower()}::{name.removeprefix('check_')}"
            started = time.monotonic()
            try:
                getattr(suite, name)()
            except Exception:  # noqa: BLE001 - every failure is reported, then the run fails
                failed.append(label)
                print(f"FAIL {label}\n{traceback.format_exc()}", flush=True)
            else:
                passed += 1
                print(f"ok   {label} ({time.monotonic() - started:.1f}s)", flush=True)
    print(f"\nsdk: {passed} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

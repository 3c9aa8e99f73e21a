#!/usr/bin/env python3
"""Reference webhook signers, independent of switchyard's Rust code.

usage: sign_webhook.py SCHEME KEY ID BODY_FILE   -> JSON object of headers

  stripe    KEY = signing secret           (Stripe-Signature, per Stripe's docs, Python hmac)
  standard  KEY = whsec_<base64> secret     (the Standard Webhooks reference library)
  adyen     KEY = hex HMAC key              (HmacSignature, per Adyen's docs, Python hmac)
  wise      KEY = path of a PEM private key (X-Signature-SHA256, the `cryptography` package)
  onfido    KEY = webhook token             (X-SHA2-Signature, per Onfido's docs, Python hmac)
  sumsub    KEY = webhook secret            (X-Payload-Digest, SHA-256; sumsub-sha1 / sumsub-sha512
                                             pick the other X-Payload-Digest-Alg values, Python hmac)
  seon      KEY = license key               (Digest: SHA-256=<hex>, UNCONFIRMED header, Python hmac)

ComplyAdvantage and Sardine sign with Standard Webhooks: use `standard`.
"""
import base64
import hashlib
import hmac
import json
import sys
import time
from datetime import datetime, timezone


def main():
    scheme, key, msg_id, body_file = sys.argv[1:5]
    body = open(body_file, "rb").read()
    now = int(time.time())
    if scheme == "stripe":
        sig = hmac.new(key.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {"Stripe-Signature": f"t={now},v1={sig}"}
    elif scheme == "standard":
        from standardwebhooks.webhooks import Webhook

        signature = Webhook(key).sign(msg_id, datetime.fromtimestamp(now, tz=timezone.utc), body.decode())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    elif scheme == "adyen":
        sig = hmac.new(bytes.fromhex(key), body, hashlib.sha256).digest()
        headers = {"HmacSignature": base64.b64encode(sig).decode()}
    elif scheme == "wise":
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        private = serialization.load_pem_private_key(open(key, "rb").read(), password=None)
        sig = private.sign(body, padding.PKCS1v15(), hashes.SHA256())
        headers = {"X-Signature-SHA256": base64.b64encode(sig).decode()}
    elif scheme == "onfido":
        headers = {"X-SHA2-Signature": hmac.new(key.encode(), body, hashlib.sha256).hexdigest()}
    elif scheme in ("sumsub", "sumsub-sha1", "sumsub-sha512"):
        alg, digestmod = {
            "sumsub": ("HMAC_SHA256_HEX", hashlib.sha256),
            "sumsub-sha1": ("HMAC_SHA1_HEX", hashlib.sha1),
            "sumsub-sha512": ("HMAC_SHA512_HEX", hashlib.sha512),
        }[scheme]
        headers = {"X-Payload-Digest": hmac.new(key.encode(), body, digestmod).hexdigest(), "X-Payload-Digest-Alg": alg}
    elif scheme == "seon":
        headers = {"Digest": "SHA-256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()}
    else:
        sys.exit(f"unknown scheme {scheme}")
    json.dump(headers, sys.stdout)


if __name__ == "__main__":
    main()

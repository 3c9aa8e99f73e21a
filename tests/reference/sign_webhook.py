#!/usr/bin/env python3
"""Reference webhook signers, independent of switchyard's Rust code.

usage: sign_webhook.py SCHEME KEY ID BODY_FILE   -> JSON object of headers

  stripe    KEY = signing secret           (Stripe-Signature, per Stripe's docs, Python hmac)
  standard  KEY = whsec_<base64> secret     (the Standard Webhooks reference library)
  adyen     KEY = hex HMAC key              (HmacSignature, per Adyen's docs, Python hmac)
  wise      KEY = path of a PEM private key (X-Signature-SHA256, the `cryptography` package)
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
    else:
        sys.exit(f"unknown scheme {scheme}")
    json.dump(headers, sys.stdout)


if __name__ == "__main__":
    main()

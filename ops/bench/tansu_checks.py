#!/usr/bin/env python3
"""Kafka semantics a local tansu broker must keep (ops/tansu/*.patch).

  1. concurrent producers on one partition: a consumer from offset 0 reads
     every offset exactly once, in order, up to the high watermark;
  2. a fetch from inside a record batch starts with that batch;
  3. ListOffsets: earliest = 0, latest = the high watermark (records
     produced, batches of many records), a timestamp = the first record whose
     timestamp is at least that (the end, -1, past the last record).

Usage: python3 ops/bench/tansu_checks.py 127.0.0.1:<port>   (exit 1 on a failure)
"""

import sys
import threading
import time
import uuid

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

FAILED = []


def check(ok, what):
    print(("ok     " if ok else "FAILED ") + what, flush=True)
    if not ok:
        FAILED.append(what)


def topic(address):
    name = f"checks-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": address})
    for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
        f.result()
    return name


def consumer(address):
    return Consumer({"bootstrap.servers": address, "group.id": f"checks-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 100})


def read(address, name, start, until, timeout=30):
    c = consumer(address)
    c.assign([TopicPartition(name, 0, start)])
    offsets, deadline = [], time.time() + timeout
    while time.time() < deadline and (not offsets or offsets[-1] < until):
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            offsets.append(m.offset())
    c.close()
    return offsets


def concurrent_producers(address):
    name = topic(address)
    per, writers = 3000, 4
    def produce(i):
        p = Producer({"bootstrap.servers": address, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 1, "batch.num.messages": 7})
        for j in range(per):
            while True:
                try:
                    p.produce(name, f"{i}-{j}".encode(), partition=0)
                    break
                except BufferError:
                    p.poll(0.01)
            if j % 50 == 0:
                p.poll(0)
        p.flush(60)
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = per * writers
    offsets = read(address, name, 0, total - 1)
    check(offsets == list(range(total)),
          f"{writers} concurrent producers, {total} records: a reader from 0 sees every offset once, in order "
          f"(got {len(offsets)}, {len(set(offsets))} distinct, last {offsets[-1] if offsets else None})")
    return name, total


def inside_a_batch(address):
    name = topic(address)
    p = Producer({"bootstrap.servers": address, "enable.idempotence": True, "acks": "all", "linger.ms": 200})
    for i in range(12):
        p.produce(name, f"r{i}".encode(), key=b"k", partition=0)
    p.flush(30)
    for start in (1, 6, 11):
        offsets = read(address, name, start, 11)
        check(offsets == list(range(start, 12)), f"a fetch from {start} inside a 12-record batch reads {start}..11 (got {offsets})")


def list_offsets(address):
    name = topic(address)
    base_ms = 1_700_000_000_000
    p = Producer({"bootstrap.servers": address, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "batch.num.messages": 10})
    n = 100
    for i in range(n):
        p.produce(name, b"t", partition=0, timestamp=base_ms + 1000 * i)
    p.flush(30)
    c = consumer(address)
    low, high = c.get_watermark_offsets(TopicPartition(name, 0), timeout=10, cached=False)
    check((low, high) == (0, n), f"watermarks of {n} records in batches of 10: (0, {n}) (got ({low}, {high}))")
    for target, expected in [(base_ms, 0), (base_ms + 1000 * 37, 37), (base_ms + 1000 * 37 + 1, 38),
                             (base_ms - 5, 0), (base_ms + 1000 * n, OFFSET_END)]:
        got = c.offsets_for_times([TopicPartition(name, 0, target)], timeout=10)[0].offset
        check(got == expected, f"offsets_for_times({target - base_ms:+d} ms) = {expected} (got {got})")
    c.close()


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
    concurrent_producers(address)
    inside_a_batch(address)
    list_offsets(address)
    print("all passed" if not FAILED else f"{len(FAILED)} FAILED")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

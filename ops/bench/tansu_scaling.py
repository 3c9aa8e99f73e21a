#!/usr/bin/env python3
"""Does a tansu broker's cost per request grow with the data it stores?

Fills one partition per broker with small records in small batches (as a
steady low-rate producer does) and, at each checkpoint (records stored),
times on every broker given, in the same run:

  fetch tail   a Fetch from the last record (raw Kafka protocol, Fetch v4)
  fetch start  a Fetch from inside one of the first batches (max_bytes 64 KiB)
  list latest  a ListOffsets for the latest offset (raw protocol)
  produce      one record produced and acknowledged (librdkafka, idempotent,
               acks=all, as the services produce)
  e2e          one record produced until a consumer waiting at the end of the
               partition receives it (librdkafka)

and the broker's CPU per request (utime+stime of its process, /proc).
Medians and p99 in ms over --samples requests. It also checks each answer:
a fetch from inside a batch must start with the batch that holds the offset,
ListOffsets latest must equal the high watermark (records produced).

Usage (brokers from ops/scripts/broker.sh on ports of your own):
  pip install confluent-kafka
  python3 ops/bench/tansu_scaling.py --broker p4=127.0.0.1:19801 \\
      --broker p5=127.0.0.1:19802 --checkpoints 10000,100000,1000000
The broker's pid is read from $SWITCHYARD_CACHE/run/tansu-<port>.pid
(written by broker.sh) for the CPU column; without it the column is blank.
"""

import argparse
import os
import socket
import statistics
import struct
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- a minimal Kafka protocol client: Fetch v4 and ListOffsets v1 ----------

def _string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Raw:
    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation = 0

    def _call(self, api_key, api_version, body):
        self.correlation += 1
        header = struct.pack(">hhi", api_key, api_version, self.correlation) + _string("bench")
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        (correlation,) = struct.unpack_from(">i", response, 0)
        assert correlation == self.correlation, "out of order response"
        return response[4:]

    def _read(self, n):
        chunks = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def fetch(self, topic, partition, offset, max_bytes):
        """Returns (error, high_watermark, [(base_offset, last_offset_delta)], bytes)."""
        # max_wait 500 ms, min_bytes 1: answered as soon as records are
        # there (fetch-wait.patch); tansu answers max_wait 0 with no topics.
        body = struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)
        body += struct.pack(">i", 1) + _string(topic)
        body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
        r = self._call(1, 4, body)
        pos = 4  # throttle_time_ms
        (topics,) = struct.unpack_from(">i", r, pos); pos += 4
        assert topics == 1
        (n,) = struct.unpack_from(">h", r, pos); pos += 2 + n
        (parts,) = struct.unpack_from(">i", r, pos); pos += 4
        assert parts == 1
        _p, error, hw, _lso = struct.unpack_from(">ihqq", r, pos); pos += 22
        (aborted,) = struct.unpack_from(">i", r, pos); pos += 4
        pos += max(aborted, 0) * 16
        (size,) = struct.unpack_from(">i", r, pos); pos += 4
        batches = []
        end = pos + max(size, 0)
        while pos + 61 <= end:
            base, length = struct.unpack_from(">qi", r, pos)
            (delta,) = struct.unpack_from(">i", r, pos + 23)
            batches.append((base, delta))
            pos += 12 + length
        return error, hw, batches, max(size, 0)

    def list_offset(self, topic, partition, timestamp=-1):
        body = struct.pack(">i", -1) + struct.pack(">i", 1) + _string(topic)
        body += struct.pack(">i", 1) + struct.pack(">iq", partition, timestamp)
        r = self._call(2, 1, body)
        pos = 0
        (topics,) = struct.unpack_from(">i", r, pos); pos += 4
        (n,) = struct.unpack_from(">h", r, pos); pos += 2 + n
        (parts,) = struct.unpack_from(">i", r, pos); pos += 4
        _p, error, _ts, offset = struct.unpack_from(">ihqq", r, pos)
        return error, offset


# --- helpers ----------------------------------------------------------------

def cpu_seconds(pid):
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return None


def broker_pid(address):
    port = address.rsplit(":", 1)[1]
    cache = os.environ.get("SWITCHYARD_CACHE", os.path.expanduser("~/.cache/switchyard"))
    try:
        with open(f"{cache}/run/tansu-{port}.pid") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Broker:
    def __init__(self, name, address, batch):
        self.name, self.address = name, address
        self.topic = f"bench-scaling-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": address})
        for f in admin.create_topics([NewTopic(self.topic, 1, 1)]).values():
            f.result()
        self.pid = broker_pid(address)
        self.raw = Raw(address)
        base = {"bootstrap.servers": address, "enable.idempotence": True, "acks": "all"}
        # Many small batches: what a steady low-rate producer leaves behind.
        self.loader = Producer({**base, "linger.ms": 2, "batch.num.messages": batch,
                                "queue.buffering.max.messages": 1_000_000})
        self.single = Producer({**base, "linger.ms": 0})
        self.consumer = Consumer({"bootstrap.servers": address, "group.id": f"bench-{self.topic}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                                  "enable.partition.eof": False})
        self.stored = 0

    def fill_to(self, records, payload):
        errors = []

        def delivered(err, _msg):
            if err is not None:
                errors.append(err)

        t0 = time.perf_counter()
        while self.stored < records:
            try:
                self.loader.produce(self.topic, payload, partition=0, on_delivery=delivered)
                self.stored += 1
            except BufferError:
                self.loader.poll(0.05)
            if self.stored % 10_000 == 0:
                self.loader.poll(0)
        self.loader.flush(600)
        if errors:
            raise RuntimeError(f"{self.name}: {len(errors)} produce errors, first {errors[0]}")
        return time.perf_counter() - t0

    def timed(self, fn, samples):
        times = []
        cpu0 = cpu_seconds(self.pid)
        for _ in range(samples):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        cpu1 = cpu_seconds(self.pid)
        cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) * 1000 / samples
        return statistics.median(times), percentile(times, 99), cpu

    def measure(self, samples):
        hw = self.stored
        out = {}

        error, _ = self.raw.list_offset(self.topic, 0)
        _, latest = self.raw.list_offset(self.topic, 0)
        check_latest = latest == hw

        def tail():
            error, high, batches, _ = self.raw.fetch(self.topic, 0, hw - 1, 64 * 1024)
            assert error == 0 and batches, (error, high, batches)
            base, delta = batches[0]
            assert base <= hw - 1 <= base + delta, (hw, batches[:2])

        # An offset inside (not at the start of) one of the first batches.
        _, _, batches, _ = self.raw.fetch(self.topic, 0, 0, 64 * 1024)
        inside = next((base + 1 for base, delta in batches if delta >= 1), 1)
        first_batch = []

        def start():
            error, _, batches, _ = self.raw.fetch(self.topic, 0, inside, 64 * 1024)
            assert error == 0 and batches, (error, batches)
            first_batch[:] = [batches[0]]

        out["fetch tail"] = self.timed(tail, samples)
        out["fetch start"] = self.timed(start, samples)
        check_start = first_batch and first_batch[0][0] <= inside <= first_batch[0][0] + first_batch[0][1]
        out["list latest"] = self.timed(lambda: self.raw.list_offset(self.topic, 0), samples)

        def produce_one():
            self.single.produce(self.topic, b"x" * 100, partition=0)
            self.single.flush(30)
            self.stored += 1

        out["produce"] = self.timed(produce_one, samples)

        self.consumer.assign([TopicPartition(self.topic, 0, self.stored)])
        # Let the consumer reach the end before timing.
        self.consumer.poll(0.5)

        def e2e():
            self.single.produce(self.topic, b"e" * 100, partition=0)
            self.single.flush(30)
            self.stored += 1
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline:
                m = self.consumer.poll(1.0)
                if m is not None and m.error() is None and m.offset() == self.stored - 1:
                    return
            raise TimeoutError(f"{self.name}: e2e record not received")

        out["e2e"] = self.timed(e2e, samples)
        self.consumer.unassign()
        return out, check_latest, bool(check_start), latest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", action="append", required=True, help="name=host:port (repeat)")
    ap.add_argument("--checkpoints", default="10000,100000,1000000")
    ap.add_argument("--batch", type=int, default=10, help="records per produced batch while filling")
    ap.add_argument("--record-bytes", type=int, default=100)
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()

    brokers = [Broker(*spec.split("=", 1), args.batch) for spec in args.broker]
    payload = b"p" * args.record_bytes
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    rows = []
    ok = True
    for checkpoint in checkpoints:
        for b in brokers:
            elapsed = b.fill_to(checkpoint, payload)
            print(f"# {b.name}: {b.stored} records stored (fill {elapsed:.1f} s)", file=sys.stderr, flush=True)
        for b in brokers:
            stored = b.stored
            out, latest_ok, start_ok, latest = b.measure(args.samples)
            if not (latest_ok and start_ok):
                ok = False
                print(f"# {b.name}: CHECK FAILED at {stored}: ListOffsets latest {latest} "
                      f"(expected {stored}), a fetch from inside a batch starts at that batch: {start_ok}",
                      file=sys.stderr, flush=True)
            for what, (p50, p99, cpu) in out.items():
                rows.append((checkpoint, b.name, what, p50, p99, cpu))
                cpu_s = "" if cpu is None else f"{cpu:.2f}"
                print(f"# {b.name} {stored:>9} {what:<12} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  cpu {cpu_s} ms/req",
                      file=sys.stderr, flush=True)

    print(f"\nrecords in batches of {args.batch}, {args.record_bytes} B each; "
          f"{args.samples} samples; ms; cpu = broker CPU ms per request")
    names = [b.name for b in brokers]
    header = "| stored | request | " + " | ".join(f"{n} p50 | {n} p99 | {n} cpu" for n in names) + " |"
    print(header)
    print("|" + "---|" * (2 + 3 * len(names)))
    keyed = {(s, n, w): (p50, p99, cpu) for s, n, w, p50, p99, cpu in rows}
    for s, w in dict.fromkeys((s, w) for s, _, w, _, _, _ in rows):
        cells = []
        for n in names:
            p50, p99, cpu = keyed.get((s, n, w), (float("nan"), float("nan"), None))
            cells.append(f"{p50:.2f} | {p99:.2f} | {'' if cpu is None else f'{cpu:.2f}'}")
        print(f"| {s:,} | {w} | " + " | ".join(cells) + " |")
    print("\nchecks (ListOffsets latest = records stored; fetch from inside a batch starts at its batch):",
          "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

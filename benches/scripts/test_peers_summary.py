#!/usr/bin/env python3
"""Tests of peers_summary.py: python3 benches/scripts/test_peers_summary.py"""

import json
import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import peers_summary  # noqa: E402


def write(directory, name, result):
    (pathlib.Path(directory) / name).write_text(json.dumps(result) + "\n")


class Summary(unittest.TestCase):
    def test_medians_and_ratios_per_mode_and_workload(self):
        with tempfile.TemporaryDirectory() as directory:
            for round_, (ledge, nats, redis) in enumerate([(100, 50, 400), (300, 100, 200), (200, 80, 100)], 1):
                for server, rate in (("ledge", ledge), ("nats", nats), ("redis", redis)):
                    write(directory, f"strict-{server}-produce-r{round_}.json",
                          {"records_per_s": rate, "latency_us": {"p99": rate * 10},
                           "node_cpu_us_per_record": rate / 100})
            write(directory, "strict-ledge-e2e-r1.json", {"latency_us": {"p50": 1000, "p99": 2000, "p99.9": 3000}})
            write(directory, "strict-nats-e2e-r1.json", {"latency_us": {"p50": 500, "p99": 4000, "p99.9": 6000}})
            write(directory, "notes.txt", {"ignored": True})
            table = peers_summary.rows(peers_summary.load(directory))
        by_metric = {(mode, workload, label): (medians, ratios, count)
                     for mode, workload, label, medians, ratios, count in table}
        medians, ratios, count = by_metric[("strict", "produce", "records/s")]
        self.assertEqual(medians, {"ledge": 200, "nats": 80, "redis": 200})
        self.assertEqual(ratios, [2.5, 1.0])
        self.assertEqual(count, 3)
        medians, ratios, count = by_metric[("strict", "e2e", "e2e p99 ms")]
        self.assertEqual(medians, {"ledge": 2.0, "nats": 4.0, "redis": None})
        self.assertEqual(ratios, [0.5, None])
        self.assertEqual(count, 0)
        self.assertNotIn(("relaxed", "produce", "records/s"), by_metric)

    def test_markdown_rendering(self):
        table = [("relaxed", "consume", "records/s", {"ledge": 12345.6, "nats": 2.5, "redis": None}, [4938.24, None], 2)]
        text = peers_summary.render(table, markdown=True).splitlines()
        self.assertEqual(text[0], "| mode | workload | metric | Ledge | NATS | Redis | Ledge/NATS | Ledge/Redis | rounds |")
        self.assertEqual(text[2], "| relaxed | consume | records/s | 12,346 | 2.500 | - | 4,938 | - | 2 |")
        plain = peers_summary.render(table, markdown=False).splitlines()
        self.assertTrue(plain[0].startswith("mode "))
        self.assertIn("12,346", plain[1])


if __name__ == "__main__":
    unittest.main()

"""Prometheus text-format counters and latency histograms, kept in-process (no dependency)."""
from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(d: dict) -> str:
    return "{" + ",".join(f'{k}="{str(v).replace(chr(34), "")}"' for k, v in sorted(d.items())) + "}" if d else ""


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests = defaultdict(int)      # (endpoint, method, status)
        self.decisions = defaultdict(int)     # (endpoint, decision, condition)
        self.errors = defaultdict(int)        # (endpoint, code)
        self.hist = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.hsum = defaultdict(float)
        self.inflight = 0

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, method, status)] += 1
            h = self.hist[endpoint]
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-1] += 1
            self.hsum[endpoint] += seconds

    def decision(self, endpoint: str, decision: str, condition: str) -> None:
        with self._lock:
            self.decisions[(endpoint, decision, condition)] += 1

    def error(self, endpoint: str, code: str) -> None:
        with self._lock:
            self.errors[(endpoint, code)] += 1

    def render(self, extra: dict[str, float] | None = None) -> str:
        out = []
        with self._lock:
            out += ["# HELP maskinv_requests_total HTTP requests by endpoint, method and status.",
                    "# TYPE maskinv_requests_total counter"]
            out += [f"maskinv_requests_total{_labels({'endpoint': e, 'method': m, 'status': s})} {n}"
                    for (e, m, s), n in sorted(self.requests.items())]
            out += ["# HELP maskinv_request_seconds Request latency.", "# TYPE maskinv_request_seconds histogram"]
            for e, h in sorted(self.hist.items()):
                for b, c in zip(BUCKETS, h):
                    out.append(f"maskinv_request_seconds_bucket{_labels({'endpoint': e, 'le': b})} {c}")
                out.append(f"maskinv_request_seconds_bucket{_labels({'endpoint': e, 'le': '+Inf'})} {h[-1]}")
                out.append(f"maskinv_request_seconds_sum{_labels({'endpoint': e})} {self.hsum[e]:.6f}")
                out.append(f"maskinv_request_seconds_count{_labels({'endpoint': e})} {h[-1]}")
            out += ["# HELP maskinv_decisions_total Verification/identification decisions.",
                    "# TYPE maskinv_decisions_total counter"]
            out += [f"maskinv_decisions_total{_labels({'endpoint': e, 'decision': d, 'condition': c})} {n}"
                    for (e, d, c), n in sorted(self.decisions.items())]
            out += ["# HELP maskinv_errors_total Refused requests by error code.", "# TYPE maskinv_errors_total counter"]
            out += [f"maskinv_errors_total{_labels({'endpoint': e, 'code': c})} {n}"
                    for (e, c), n in sorted(self.errors.items())]
        for name, v in (extra or {}).items():
            out += [f"# TYPE {name} gauge", f"{name} {v}"]
        return "\n".join(out) + "\n"

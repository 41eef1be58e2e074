#!/usr/bin/env python3
"""Ask ems whether a row's GPUs are under a demand-response budget (docs/demand-response.md).

For a cluster scheduler's prolog or admission hook, standard library only:

    dr_budget.py --url http://ems:8080 --row row03 [--ahead-s 600] [--json]

Exit 0: the row has no budget now and no event is due within `--ahead-s` (start the job);
3: an event caps the row now, or one is due within `--ahead-s` and the row's flex tier lets
it be capped (keep tier-0 work off it); 2: ems cannot be asked (the caller decides; a prolog
should not block work on a monitoring outage). With `--json` the row's view is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def row_view(url: str, row: str, timeout_s: float) -> dict[str, Any]:
    with urllib.request.urlopen(url.rstrip("/") + "/api/dr", timeout=timeout_s) as r:
        body = json.load(r)
    dr = body.get("dr") or {}
    rows = dr.get("rows") or {}
    mine = rows.get(row) or {"flex_tier": None, "budget_w": None, "racks_capped": 0}
    return {"row": row, "phase": dr.get("phase"), "event_id": dr.get("event_id"), **mine,
            "pending": dr.get("pending") or []}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--url", required=True, help="the ems operator API, e.g. http://ems:8080")
    ap.add_argument("--row", required=True)
    ap.add_argument("--ahead-s", type=float, default=0.0, help="also refuse when an event starts within this")
    ap.add_argument("--timeout-s", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        view = row_view(args.url, args.row, args.timeout_s)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"dr_budget: cannot ask ems: {exc}", file=sys.stderr)
        return 2
    now = time.time()
    tier = view.get("flex_tier")
    pending: list[dict[str, Any]] = [e for e in view["pending"] if isinstance(e, dict)]
    soon = [e for e in pending if not e.get("opted_out")
            and float(e.get("start_s", 0)) - now <= args.ahead_s and float(e.get("end_s", 0)) > now]
    capped = view.get("budget_w") is not None
    if args.json:
        print(json.dumps({**view, "due": [e["event_id"] for e in soon]}))
    return 3 if capped or (soon and tier not in (None, 0)) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Check the fake VTN's JSON and the VEN's report against openadr3-client's own models.

openadr3-client (ElaadNL) needs Python 3.12 and ems runs on 3.11, so the VEN is not built on
it; this keeps the tests' OpenADR 3.0.1 shapes the library's rather than ours. Run with a
Python >= 3.12 where `pip install 'openadr3-client>=2.4,<3'` was done:

    python3.12 scripts/check_openadr3_shapes.py

Exit 0: every program, event and report the tests use validates.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from openadr3_client.oadr301.models.event.event import ExistingEvent  # noqa: E402
from openadr3_client.oadr301.models.program.program import ExistingProgram  # noqa: E402
from openadr3_client.oadr301.models.report.report import NewReport  # noqa: E402
from openadr3_client.oadr301.models.ven.resource import ExistingResource, NewResource  # noqa: E402
from openadr3_client.oadr301.models.ven.ven import ExistingVen, NewVen  # noqa: E402
from vtn3_payloads import event, program, ven_object  # noqa: E402


def main() -> int:
    t0 = datetime.now(UTC).replace(microsecond=0)
    m = timedelta(minutes=1)
    programs = [program("p-1", "site-flex"), program("p-2", "other-program", targets={"VEN_NAME": ["site-9"]})]
    events = [
        event("e-1", "p-1", t0, [(30 * m, "IMPORT_CAPACITY_LIMIT", 360.0), (15 * m, "IMPORT_CAPACITY_LIMIT", 0.4)],
              units="MW", priority=1),
        event("e-2", "p-1", t0, [(m, "SIMPLE", 2), (m, "SIMPLE", 0)], units=None),
        event("e-3", "p-1", t0, [(m, "DISPATCH_SETPOINT_RELATIVE", -50.0)], units=None),
        event("e-4", "p-1", t0, [(m, "PRICE", 0.3)]),
        event("e-5", "p-1", t0, [(m, "EXPORT_CAPACITY_LIMIT", 100.0)], modified="2026-01-02T00:00:00Z"),
        event("e-6", "p-1", t0, [(m, "SIMPLE", 1)], targets={"VEN_NAME": ["site-7"], "GROUP": ["north"]}),
    ]
    for p in programs:
        ExistingProgram.model_validate(p)
    for e in events:
        ExistingEvent.model_validate(json.loads(json.dumps(e)))
    NewReport.model_validate(json.loads((ROOT / "tests" / "data" / "openadr3" / "report.json").read_text()))
    request = json.loads((ROOT / "tests" / "data" / "openadr3" / "ven.json").read_text())
    NewVen.model_validate(request)
    ExistingVen.model_validate(ven_object("v-1", request))
    resource = json.loads((ROOT / "tests" / "data" / "openadr3" / "resource.json").read_text())
    NewResource.model_validate(resource)
    ExistingResource.model_validate({"id": "r-1", "createdDateTime": "2026-01-01T00:00:00Z",
                                     "modificationDateTime": "2026-01-01T00:00:00Z", **resource})
    print(f"{len(programs)} programs, {len(events)} events, the report, the ven and resource requests validate with "
          "openadr3-client")
    return 0


if __name__ == "__main__":
    sys.exit(main())

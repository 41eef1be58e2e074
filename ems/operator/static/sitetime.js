// Site wall time as a person reads it: one zone for the whole page (the site's, from the status;
// UTC until the status says otherwise), never epoch seconds and never the browser's own zone.
"use strict";

const SiteTime = (() => {
  let zone = "UTC";
  let parts = null;  // Intl formatter to date and time parts in `zone`

  function setZone(name) {
    const z = name || "UTC";
    if (parts && z === zone) return zone;
    try {
      parts = new Intl.DateTimeFormat("en-GB", {timeZone: z, hourCycle: "h23", year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
      zone = z;
    } catch (err) {  // a zone this browser does not know: UTC, and the page says UTC
      parts = new Intl.DateTimeFormat("en-GB", {timeZone: "UTC", hourCycle: "h23", year: "numeric",
        month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
      zone = "UTC";
    }
    return zone;
  }
  setZone("UTC");

  // {y, mo, d, h, mi, s} of epoch seconds `ts` in the site's zone
  function fields(ts) {
    const o = {};
    for (const p of parts.formatToParts(new Date(ts * 1000))) o[p.type] = p.value;
    return {y: o.year, mo: o.month, d: o.day, h: o.hour === "24" ? "00" : o.hour, mi: o.minute, s: o.second};
  }

  // the zone's offset from UTC at `ts`, in seconds (for ticks on the zone's round hours)
  function offset(ts) {
    const f = fields(ts);
    const local = Date.UTC(+f.y, +f.mo - 1, +f.d, +f.h, +f.mi, +f.s) / 1000;
    return Math.round((local - Math.floor(ts)) / 60) * 60;
  }

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const ok = ts => typeof ts === "number" && isFinite(ts);

  return {
    setZone,
    get zone() { return zone; },
    offset,
    fields,
    // 2026-11-28 22:45:49
    dateTime: ts => { if (!ok(ts)) return "—"; const f = fields(ts); return `${f.y}-${f.mo}-${f.d} ${f.h}:${f.mi}:${f.s}`; },
    // 22:45:49
    time: ts => { if (!ok(ts)) return "—"; const f = fields(ts); return `${f.h}:${f.mi}:${f.s}`; },
    // 22:45
    hm: ts => { const f = fields(ts); return `${f.h}:${f.mi}`; },
    // 28 Nov
    day: ts => { const f = fields(ts); return `${+f.d} ${MONTHS[+f.mo - 1]}`; },
    // 22:45:49, or 27 Nov 22:45:49 when not on the day of `ref`
    near: (ts, ref) => {
      if (!ok(ts)) return "—";
      const f = fields(ts), r = ok(ref) ? fields(ref) : f;
      const t = `${f.h}:${f.mi}:${f.s}`;
      return f.y === r.y && f.mo === r.mo && f.d === r.d ? t : `${+f.d} ${MONTHS[+f.mo - 1]} ${f.y !== r.y ? f.y + " " : ""}${t}`;
    },
    // 20261128T224549 (file names)
    compact: ts => { const f = fields(ts); return `${f.y}${f.mo}${f.d}T${f.h}${f.mi}${f.s}`; },
    // a duration in site seconds, for a person: 45 s, 12 min, 3.5 h
    span: s => !ok(s) ? "—" : s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min`
      : s < 172800 ? `${(s / 3600).toFixed(s < 36000 ? 1 : 0)} h` : `${(s / 86400).toFixed(1)} d`,
  };
})();

window.SiteTime = SiteTime;

// Footfall tracker: no cookies, nothing stored. Its data- attributes: README, "Tracking snippet"
((w, d, n, l) => {
  const el = d.currentScript, opt = el.dataset;
  const site = opt.site || l.hostname;
  const api = opt.api || new URL(el.src).origin + "/api/v1/collect";
  let tz, ms, t0, depth, sent, page, path;
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone } catch (e) {}

  const send = (k, x) => {
    if (n.globalPrivacyControl && opt.gpc != "off" || n.doNotTrack == 1 && opt.dnt) return;
    try {
      const type = "text/plain"; // CORS-safelisted: no preflight
      const body = JSON.stringify(Object.assign({ k, s: site, u: l.href, r: d.referrer || null,
        w: w.innerWidth, l: n.language, z: tz }, x), (_, v) => v == null ? undefined : v);
      n.sendBeacon && n.sendBeacon(api, new Blob([body], { type })) ||
        fetch(api, { method: "POST", body, keepalive: true, credentials: "omit",
          headers: { "Content-Type": type } }).catch(() => {});
    } catch (e) {}
  };
  const props = (o, p) => {
    for (const i in o) if (o[i] != null) (p = p || {})[i] = "" + o[i];
    return p;
  };

  // Engagement: visible-only ms + max scroll depth % of the current page view
  const vis = () => d.visibilityState == "visible";
  const scroll = () => {
    const h = d.documentElement.scrollHeight, v = w.innerHeight;
    depth = Math.max(depth, h > v ? Math.min(100, Math.round((w.scrollY + v) / h * 100)) : 100);
  };
  const tick = () => {
    const t = performance.now();
    if (t0) ms += t - t0;
    t0 = vis() && t;
  };
  const engage = () => {
    tick(), scroll();
    if (ms >= 1000 || depth > sent) {
      send("engagement", { u: page, e: Math.round(ms), d: depth });
      ms = 0, sent = depth;
    }
  };
  const view = () => {
    page = l.href, path = l.pathname + l.search;
    ms = depth = t0 = 0;
    tick(), scroll();
    sent = depth;
    let v;
    try { opt.returning == "on" && (v = +!!localStorage.ff, localStorage.ff = 1) } catch (e) {}
    send("pageview", { v });
  };
  const spa = () => path != l.pathname + l.search && (engage(), view());

  // API: footfall.track(name, props), footfall.convert(type, data), footfall("track", ...)
  const ff = (m, ...a) => ff[m] && ff[m](...a);
  ff.track = (n, p) => send("event", { n: "" + n, p: props(p) });
  ff.convert = (n, x) => {
    x = Object(x);
    const a = parseFloat(x.amount);
    send("conversion", { n: "" + n, a: isFinite(a) ? a : null,
      c: x.currency ? ("" + x.currency).toUpperCase() : null,
      p: props(Object.assign({}, x, { amount: null, currency: null })) });
  };

  addEventListener("scroll", scroll, { passive: true });
  addEventListener("pagehide", engage);
  d.addEventListener("visibilitychange", () => vis() ? tick() : engage());
  if (opt.spa != "off") {
    const push = history.pushState;
    history.pushState = function () { push.apply(this, arguments), spa() };
    addEventListener("popstate", spa);
  }

  // Replay calls queued before load: footfall.q = [["track", name, props], ...]
  const q = w.footfall && w.footfall.q || [];
  w.footfall = ff;
  view();
  for (const c of q) ff(...c);
})(window, document, navigator, location);

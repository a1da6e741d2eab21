// Footfall compatibility mode: Plausible's and Umami's page APIs and automatic events on top
// of footfall.js, served as /js/script[.EXTENSION...].js and /script.js (web/trackers.py puts
// the extensions in place of EXTENSIONS). No cookies, nothing stored.
((w, d, l, x) => {
  const ff = w.footfall, on = e => x.includes(e);
  const event = (n, o) => {
    o = o || {};
    o.revenue ? ff.convert(n, Object.assign({}, o.props, o.revenue)) : ff.track(n, o.props);
    o.callback && o.callback({ status: 202 });
  };
  // plausible("Signup", {props, revenue, callback}); calls queued before load in plausible.q
  const q = w.plausible && w.plausible.q || [];
  w.plausible = event;
  for (const c of q) event(...c);
  // umami.track("Signup", data), umami.track({name, data}), umami.track(props => ...);
  // umami.identify() stores nothing (Footfall keeps no per-visitor data)
  w.umami = {
    track: (n, p) => {
      if (typeof n == "function") n = n({});
      if (typeof n == "object" && n) p = n.data, n = n.name;
      n && ff.track(n, p);
    },
    identify: () => {}
  };
  const props = (el, prefix) => {
    const p = {};
    for (const a of el.attributes) a.name.startsWith(prefix) && (p[a.name.slice(prefix.length)] = a.value);
    return p;
  };
  d.addEventListener("click", e => {
    const t = e.target.closest ? e.target : e.target.parentElement;
    const u = t && t.closest("[data-umami-event]");
    if (u) return ff.track(u.dataset.umamiEvent, props(u, "data-umami-event-"));
    const tag = t && t.closest("[class*=plausible-event-]");
    if (tag && on("tagged-events")) {
      let n, p = {};
      for (const c of tag.classList) {
        const m = c.match(/^plausible-event-(.+?)(=|--)(.+)$/);
        m && (m[1] == "name" ? n = m[3].replace(/\+/g, " ") : p[m[1]] = m[3].replace(/\+/g, " "));
      }
      if (n) return ff.track(n, p);
    }
    const a = t && t.closest("a[href]");
    if (!a) return;
    const url = a.href.split("?")[0];
    if (on("file-downloads") && /\.(pdf|xlsx?|docx?|txt|rtf|csv|exe|key|pp[st]x?|7z|pkg|rar|gz|zip|avi|mov|mp4|mpe?g|wmv|midi?|mp3|wav|wma|dmg)$/i.test(url))
      ff.track("File Download", { url });
    else if (on("outbound-links") && a.host && a.host != l.host)
      ff.track("Outbound Link: Click", { url: a.href });
  });
})(window, document, location, "EXTENSIONS".split("."));

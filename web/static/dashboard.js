/* Footfall dashboard: the little JavaScript htmx does not do for us. No inline scripts (CSP). */
(function () {
  "use strict";
  // Tell the server this browser runs htmx: widgets may then load one by one.
  document.cookie = "footfall_js=1; path=/; SameSite=Lax";

  // Every unsafe htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.content) {
      event.detail.headers["X-CSRF-Token"] = meta.content;
    }
  });

  // A widget swapped in: no longer busy.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.removeAttribute) {
      target.removeAttribute("aria-busy");
    }
  });

  // Close an open menu (period, comparison) with Escape or a click elsewhere.
  function closeMenus(except) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (menu !== except) {
        menu.removeAttribute("open");
      }
    });
  }
  document.addEventListener("click", function (event) {
    closeMenus(event.target.closest ? event.target.closest("details.menu") : null);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      var open = document.querySelector("details.menu[open]");
      closeMenus(null);
      if (open) {
        open.querySelector("summary").focus();
      }
    }
  });

  // The live stream: drop the "waiting" note once events arrive, keep the table short.
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.detail && event.detail.type === "events") {
      var note = document.querySelector(".empty-stream");
      if (note) {
        note.remove();
      }
      var rows = document.querySelectorAll("#live-events tr");
      for (var i = 100; i < rows.length; i++) {
        rows[i].remove();
      }
    }
  });
})();

/* Definitions pages: confirm deletions, and show funnel step rows one at a time. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // A delete form asks first (the form works without JavaScript too, just without asking).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form && form.classList && form.classList.contains("confirm")) {
      if (!window.confirm(form.getAttribute("data-confirm") || "Are you sure?")) {
        event.preventDefault();
        event.stopPropagation();
      }
    }
  }, true);

  // Spare funnel steps (3 to 8, empty) stay hidden until "Add a step" asks for one.
  function setUpSteps(root) {
    var forms = (root || document).querySelectorAll(".funnel-form");
    forms.forEach(function (form) {
      var button = form.querySelector(".add-step");
      if (!button || button.dataset.ready) {
        return;
      }
      button.dataset.ready = "1";
      function refresh() {
        button.hidden = form.querySelectorAll(".step-spare:not(.shown)").length === 0;
      }
      button.addEventListener("click", function () {
        var next = form.querySelector(".step-spare:not(.shown)");
        if (next) {
          next.classList.add("shown");
          var input = next.querySelector(".step-value");
          if (input) {
            input.focus();
          }
        }
        refresh();
      });
      refresh();
    });
  }
  document.addEventListener("DOMContentLoaded", function () { setUpSteps(document); });
  document.addEventListener("htmx:afterSettle", function (event) { setUpSteps(event.target); });
})();

/* The front door: copy the tracking snippet, and tell a new site's owner when its first
   event arrives (the onboarding page listens to the live view's stream). */
(function () {
  "use strict";

  // Copy buttons stay hidden without JavaScript (the snippet can still be selected).
  function setUpCopy(root) {
    (root || document).querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      if (button.dataset.ready) {
        return;
      }
      button.dataset.ready = "1";
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        var status = button.parentNode.querySelector(".copy-status");
        if (!source) {
          return;
        }
        function done(copied) {
          if (status) {
            status.textContent = copied ? "Copied." : "Select the snippet and copy it (Ctrl+C).";
          }
        }
        function selectAndCopy() {
          var range = document.createRange();
          range.selectNodeContents(source);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          var copied = false;
          try {
            copied = document.execCommand("copy");
          } catch (error) {
            copied = false;
          }
          done(copied);
        }
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(source.textContent.trim()).then(function () { done(true); }, selectAndCopy);
        } else {
          selectAndCopy();  // plain http on a LAN address: no Clipboard API
        }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { setUpCopy(document); });
  document.addEventListener("htmx:afterSettle", function (event) { setUpCopy(event.target); });

  // Onboarding: the first rows from the stream mean the snippet works.
  document.addEventListener("htmx:sseMessage", function (event) {
    var status = document.getElementById("verify-status");
    if (!status || status.classList.contains("arrived") || !event.detail || event.detail.type !== "events") {
      return;
    }
    var parsed = document.createElement("template");
    parsed.innerHTML = "<table><tbody>" + event.detail.data + "</tbody></table>";
    var rows = parsed.content.querySelectorAll("tr");
    if (!rows.length) {
      return;
    }
    var first = rows[rows.length - 1];  // the stream sends the newest first
    function cell(selector) {
      var found = first.querySelector(selector);
      return found ? found.textContent.trim() : "";
    }
    var kind = cell(".badge") || "Event";
    var page = cell(".path");
    status.classList.add("arrived");
    var dot = status.querySelector(".live-dot");
    if (dot) {
      dot.classList.remove("waiting-dot");
    }
    status.querySelector(".verify-text").textContent =
      "Your first event arrived at " + cell("td.num") + ": " + kind.toLowerCase() + (page ? " on " + page : "") +
      ". The snippet works.";
    var next = document.querySelector(".verify-next");
    if (next) {
      next.hidden = false;
    }
  });
})();

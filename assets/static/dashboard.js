// securechat admin dashboard: polls /api/series (same origin, the session
// cookie) every 2 seconds, updates the numbers and draws the chart. The
// server keeps the samples, so a reload shows the recent past at once.
"use strict";

(function () {
  var canvas = document.getElementById("chart");
  var status = document.getElementById("chart-status");
  if (!canvas) {
    return;
  }
  var colours = { messages: "#2364d2", deliveries: "#1e8449", limited: "#c0392b" };

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el && el.textContent !== String(text)) {
      el.textContent = text;
    }
  }

  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function update(body) {
    var s = body.stats;
    var samples = body.samples || [];
    var last = samples.length ? samples[samples.length - 1] : null;
    setText("stat-uptime", s.uptime);
    setText("stat-connections", s.connections);
    setText("stat-messages", s.messages_in);
    setText("stat-deliveries", s.deliveries);
    setText("stat-queue", s.queue_depth);
    setText("stat-groups", s.groups);
    setText("stat-store", bytes(s.store_bytes));
    setText("stat-blobs", bytes(s.blob_bytes));
    setText("stat-blobs-note", s.blobs + " encrypted files waiting for their recipients");
    setText("stat-limited", s.limited);
    setText("stat-authfail", s.auth_failed);
    setText("stat-bans", s.bans);
    setText("stat-refused", s.refused);
    if (last) {
      setText("stat-msgs-rate", last.messages.toFixed(1));
      setText("stat-bytes-rate", last.bytes_in.toFixed(0) + " · " + last.bytes_out.toFixed(0));
    }
    draw(samples);
    canvas.setAttribute("data-points", String(samples.length));
    status.textContent = "Updated " + window.securechatTime(new Date()) + ".";
  }

  function draw(samples) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var pad = { l: 48, r: 10, t: 10, b: 22 };
    // The axis has whole-number ticks (a step of 1, 2 or 5 times a power
    // of ten, at least 1) up to the first one at or above the highest
    // point: never a label like 0.3.
    var high = 0;
    samples.forEach(function (p) {
      high = Math.max(high, p.messages, p.deliveries, p.limited);
    });
    var step = niceStep(high / 4);
    var top = step * Math.max(1, Math.ceil(high / step));
    var ticks = [];
    for (var v = 0; v <= top; v += step) {
      ticks.push(v);
    }
    canvas.setAttribute("data-ticks", ticks.join(","));
    ctx.setLineDash([]);
    ctx.strokeStyle = "#e3e7ec";
    ctx.fillStyle = "#5f6b7a";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ticks.forEach(function (v) {
      var y = pad.t + (h - pad.t - pad.b) * (1 - v / top);
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(w - pad.r, y);
      ctx.stroke();
      ctx.fillText(String(v), 4, y + 4);
    });
    if (samples.length < 2) {
      ctx.fillText("collecting samples…", pad.l + 8, pad.t + 16);
      return;
    }
    var t0 = samples[0].t, t1 = samples[samples.length - 1].t;
    var span = Math.max(t1 - t0, 1);
    ctx.fillText(Math.round(span / 1000) + " s", w - pad.r - 40, h - 6);
    ["limited", "messages", "deliveries"].forEach(function (key) {
      ctx.strokeStyle = colours[key];
      ctx.lineWidth = key === "messages" ? 2.5 : 1.5;
      ctx.setLineDash(key === "deliveries" ? [6, 4] : []);
      ctx.beginPath();
      samples.forEach(function (p, j) {
        var x = pad.l + (w - pad.l - pad.r) * (p.t - t0) / span;
        var y = pad.t + (h - pad.t - pad.b) * (1 - p[key] / top);
        if (j === 0) {
          ctx.moveTo(x, y);
        } else {
          ctx.lineTo(x, y);
        }
      });
      ctx.stroke();
    });
  }

  // niceStep is the smallest of 1, 2, 5, 10, 20, 50, … at or above v.
  function niceStep(v) {
    if (v <= 1) {
      return 1;
    }
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (v <= steps[i] * p) {
        return steps[i] * p;
      }
    }
    return 10 * p;
  }

  function poll() {
    fetch("/api/series", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          window.location.href = "/login?next=/";
          throw new Error("logged out");
        }
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.json();
      })
      .then(update)
      .catch(function (e) {
        status.textContent = "Not updating: " + e.message;
      })
      .then(function () {
        window.setTimeout(poll, 2000);
      });
  }
  poll();
})();

// securechat admin: behaviour shared by every page. No inline script is
// allowed (Content-Security-Policy), so pages mark elements with data-*
// attributes and this file wires them up.
"use strict";

document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var name = form.getAttribute("data-confirm-name");
  if (name === null) {
    return;
  }
  var typed = window.prompt("This deletes the account " + name + " and its devices and mailboxes.\nType the user name to confirm:");
  if (typed === null || typed.trim() !== name) {
    ev.preventDefault();
    return;
  }
  form.querySelector("input[name=confirm]").value = typed.trim();
});

// Times: the server writes each as <time datetime="RFC 3339 in UTC"> with
// the text in its own zone, in the format of the console and `securechat
// admin` (2006-01-02 15:04:05 MST). Here they are shown in the same format
// in the browser's time zone, which is the operator's.
(function () {
  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // zone is the time zone's abbreviation at d as Go writes it (CET, EST,
  // UTC, IST), or its offset (+0530) where the browser knows no name.
  function zone(d) {
    var locales = ["en-US", "en-GB"];
    for (var i = 0; i < locales.length; i++) {
      try {
        var parts = new Intl.DateTimeFormat(locales[i], { timeZoneName: "short" }).formatToParts(d);
        for (var j = 0; j < parts.length; j++) {
          if (parts[j].type === "timeZoneName" && !/^(GMT|UTC)[+-]/.test(parts[j].value)) {
            return parts[j].value;
          }
        }
      } catch (e) {
        break;
      }
    }
    var off = -d.getTimezoneOffset();
    var sign = off < 0 ? "-" : "+";
    off = Math.abs(off);
    return sign + two(Math.floor(off / 60)) + two(off % 60);
  }

  window.securechatTime = function (d) {
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " +
      two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()) + " " + zone(d);
  };

  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var d = new Date(times[i].getAttribute("datetime"));
    if (!isNaN(d.getTime())) {
      times[i].textContent = window.securechatTime(d);
    }
  }
})();

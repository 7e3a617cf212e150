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

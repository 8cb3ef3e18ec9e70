/*
 * django-idempotency's browser helper: one Idempotency-Key per submission, kept until its
 * answer arrives. A second click while it is pending joins the first; a network error, a 5xx
 * or a 409 "in flight" is retried with the same key and body (waiting as Retry-After asks); a
 * reload or a return to the page while it was pending sends it again from sessionStorage, so
 * the page learns what became of it instead of forgetting it. No build step, no framework.
 *
 *   <form method="post" action="/orders/" data-idempotent data-idempotent-status="#status">
 *   {% idempotency_script %}
 *
 * or from code: DjangoIdempotency.send(slot, {url, method, headers, body}, hooks).
 * Events on the form: idempotency:pending, idempotency:retry, idempotency:done (detail:
 * {response, data, key, attempts, replayed, resumed}), idempotency:failed (detail: {error}).
 */
(function (window, document) {
  "use strict";

  var STORE_PREFIX = "django-idempotency:";
  var HEADER = "Idempotency-Key";
  var IN_FLIGHT = "idempotency-request-in-flight";
  var MAX_ATTEMPTS = 8;
  var MAX_ELAPSED_MS = 60000;
  var BASE_DELAY_MS = 250;
  var MAX_DELAY_MS = 4000;
  var pending = {}; // slot -> Promise of the submission running in this page

  function newKey() {
    // crypto.getRandomValues works on plain http too (randomUUID needs a secure context).
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); })
      .join("");
  }

  function storage() {
    try {
      return window.sessionStorage; // null in some sandboxed frames; throws when disabled
    } catch (e) {
      return null;
    }
  }

  function load(slot) {
    var store = storage();
    var text = store && store.getItem(STORE_PREFIX + slot);
    try {
      return text ? JSON.parse(text) : null;
    } catch (e) {
      return null;
    }
  }

  function save(slot, submission) {
    var store = storage();
    if (store) store.setItem(STORE_PREFIX + slot, JSON.stringify(submission));
  }

  function forget(slot) {
    var store = storage();
    if (store) store.removeItem(STORE_PREFIX + slot);
  }

  function sleep(ms) {
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  // Seconds (delay-seconds) or an HTTP-date, as milliseconds from now; null if absent.
  function retryAfterMs(response) {
    var value = response.headers.get("Retry-After");
    if (value === null) return null;
    if (/^\s*\d+\s*$/.test(value)) return parseInt(value, 10) * 1000;
    var when = Date.parse(value);
    return isNaN(when) ? null : Math.max(0, when - Date.now());
  }

  function backoffMs(retry) {
    var step = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * Math.pow(2, retry - 1));
    return step / 2 + (step / 2) * Math.random();
  }

  function problemCode(data) {
    var type = data && typeof data.type === "string" ? data.type : "";
    var parts = type.split(/[#/:]/);
    return parts[parts.length - 1] || null;
  }

  function readBody(response) {
    var type = response.headers.get("Content-Type") || "";
    if (type.indexOf("json") === -1) return response.text();
    return response.json().catch(function () { return null; });
  }

  // "retry": send the same again; "final": the answer to show.
  function verdict(response, data) {
    var status = response.status;
    if (status < 400) return "final";
    if (status >= 500 || status === 408 || status === 425 || status === 429) return "retry";
    if (status === 409 && problemCode(data) === IN_FLIGHT) return "retry";
    return "final";
  }

  function attempt(submission) {
    var headers = {};
    Object.keys(submission.headers || {}).forEach(function (name) {
      headers[name] = submission.headers[name];
    });
    headers[HEADER] = submission.key;
    return window.fetch(submission.url, {
      method: submission.method,
      headers: headers,
      body: submission.body,
      credentials: "same-origin",
      redirect: "follow",
    });
  }

  function run(slot, submission, hooks) {
    var started = Date.now();
    var attempts = 0;
    hooks = hooks || {};

    function again(wait, why) {
      if (attempts >= MAX_ATTEMPTS || Date.now() - started + wait > MAX_ELAPSED_MS) {
        var error = new Error(
          "No answer after " + attempts + " attempts: the submission may have been carried out."
        );
        error.key = submission.key;
        error.attempts = attempts;
        error.why = why;
        // Kept in sessionStorage: a reload of the page sends it again to learn its fate.
        throw error;
      }
      if (hooks.onRetry) hooks.onRetry({ attempt: attempts + 1, wait: wait, why: why });
      return sleep(wait).then(next);
    }

    function next() {
      attempts += 1;
      return attempt(submission).then(
        function (response) {
          return readBody(response).then(function (data) {
            if (verdict(response, data) === "retry") {
              var asked = retryAfterMs(response);
              var wait = asked === null ? backoffMs(attempts) : asked + BASE_DELAY_MS * Math.random();
              return again(wait, "status " + response.status);
            }
            forget(slot);
            return {
              response: response,
              data: data,
              key: submission.key,
              attempts: attempts,
              replayed: response.headers.get("Idempotent-Replayed") === "true",
              resumed: !!submission.resumed,
            };
          });
        },
        function (error) {
          // fetch() rejects on a network error: the request may or may not have arrived.
          return again(backoffMs(attempts), String(error));
        }
      );
    }

    var promise = next();
    pending[slot] = promise;
    var clear = function () { if (pending[slot] === promise) delete pending[slot]; };
    promise.then(clear, clear);
    return promise;
  }

  /* Send ``request`` ({url, method, headers, body: a string}) as the submission ``slot``
   * (one pending submission per slot): joins the one already running in this page. */
  function send(slot, request, hooks) {
    if (pending[slot]) return pending[slot];
    var submission = {
      key: newKey(),
      url: request.url,
      method: (request.method || "POST").toUpperCase(),
      headers: request.headers || {},
      body: request.body === undefined ? null : request.body,
    };
    save(slot, submission); // before the first byte leaves: a reload mid-flight finds it
    return run(slot, submission, hooks);
  }

  /* The submission of ``slot`` a previous load of this page left pending, sent again with its
   * key; null when there is none. */
  function resume(slot, hooks) {
    if (pending[slot]) return pending[slot];
    var submission = load(slot);
    if (!submission || !submission.key) return null;
    submission.resumed = true;
    return run(slot, submission, hooks);
  }

  // -- forms marked data-idempotent -------------------------------------------------------

  var MESSAGES = {
    pending: "Sending… Please wait for the answer; submitting again is not needed.",
    resumed:
      "A submission from this page was still waiting for its answer; checking what became of it…",
    retry: "The connection failed. Sending the same submission again (attempt {n}); it is carried out at most once.",
    failed:
      "No answer from the server: this submission may or may not have been carried out. " +
      "Reload this page to check; do not submit it again.",
    done: "Done.",
    replayed: "Done (this is the answer to your earlier, identical submission).",
    refused: "Not carried out: {detail}",
  };

  function statusElement(form) {
    var selector = form.getAttribute("data-idempotent-status");
    return selector ? document.querySelector(selector) : null;
  }

  function say(form, text) {
    var element = statusElement(form);
    if (element) element.textContent = text;
  }

  function emit(form, name, detail) {
    return form.dispatchEvent(
      new CustomEvent("idempotency:" + name, { detail: detail, bubbles: true, cancelable: true })
    );
  }

  function slotOf(form) {
    return form.getAttribute("data-idempotent") || form.getAttribute("action") || location.pathname;
  }

  function requestOf(form) {
    var data = new FormData(form);
    var csrf = data.get("csrfmiddlewaretoken");
    var headers = {
      Accept: "application/json",
      "Content-Type": "application/x-www-form-urlencoded",
    };
    if (csrf) headers["X-CSRFToken"] = csrf;
    return {
      url: form.getAttribute("action") || location.href,
      method: form.getAttribute("method") || "POST",
      headers: headers,
      body: new URLSearchParams(data).toString(),
    };
  }

  function busy(form, on) {
    Array.prototype.forEach.call(form.querySelectorAll("[type=submit]"), function (button) {
      button.disabled = on;
    });
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  function follow(form, promise) {
    busy(form, true);
    return promise.then(
      function (outcome) {
        busy(form, false);
        var ok = outcome.response.status < 400;
        if (ok) form.reset(); // the next submission is a new one, with a new key
        var detail = (outcome.data && outcome.data.detail) || outcome.response.statusText;
        say(
          form,
          ok
            ? outcome.replayed ? MESSAGES.replayed : MESSAGES.done
            : MESSAGES.refused.replace("{detail}", detail)
        );
        emit(form, "done", outcome);
        return outcome;
      },
      function (error) {
        busy(form, false);
        say(form, MESSAGES.failed);
        emit(form, "failed", { error: error });
      }
    );
  }

  function hooksFor(form) {
    return {
      onRetry: function (info) {
        say(form, MESSAGES.retry.replace("{n}", info.attempt));
        emit(form, "retry", info);
      },
    };
  }

  function bind(form) {
    if (form.__djangoIdempotency) return;
    form.__djangoIdempotency = true;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var slot = slotOf(form);
      if (pending[slot]) return; // a double click: the first submission is still running
      say(form, MESSAGES.pending);
      emit(form, "pending", {});
      follow(form, send(slot, requestOf(form), hooksFor(form)));
    });
  }

  // A submission an earlier load of the page left without an answer: ask again.
  function pickUp(form) {
    if (pending[slotOf(form)]) return;
    var resumed = resume(slotOf(form), hooksFor(form));
    if (resumed) {
      say(form, MESSAGES.resumed);
      emit(form, "pending", { resumed: true });
      follow(form, resumed);
    }
  }

  function forms() {
    return Array.prototype.slice.call(document.querySelectorAll("form[data-idempotent]"));
  }

  function start() {
    forms().forEach(function (form) {
      bind(form);
      pickUp(form);
    });
  }

  // A page restored from the back-forward cache runs no load event: pick up there too.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) forms().forEach(pickUp);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }

  window.DjangoIdempotency = { send: send, resume: resume, bind: bind, newKey: newKey };
})(window, document);

// Status page: poll the order's status until it settles (about every 2 s, backing off),
// then stop; after a few minutes stop anyway with a clear message. Without JavaScript the
// page refreshes itself (<noscript> meta refresh).
(function () {
  'use strict';
  var root = document.querySelector('[data-order-status]');
  if (!root || root.dataset.settled === 'true') { return; }
  var badge = root.querySelector('[data-status-badge]');
  var message = root.querySelector('[data-status-message]');
  var spinner = root.querySelector('[data-spinner]');
  var payLink = root.querySelector('[data-pay-link]');
  var delay = 2000, maxDelay = 10000, giveUpAfter = 3 * 60 * 1000, started = Date.now();

  function renderBalance(balance) {
    // the header's "1,234 pts" chip: its last text node follows a visually-hidden label
    var chip = document.querySelector('.points-chip');
    if (typeof balance !== 'number' || !chip || !chip.lastChild) { return; }
    chip.lastChild.nodeValue = balance.toLocaleString('en-US') + ' pts';
  }

  function render(state) {
    renderBalance(state.points_balance);
    badge.textContent = state.status.replace(/_/g, ' ');
    badge.className = 'status status-' + state.order_status;
    message.textContent = state.message;
    if (state.pay_url) {
      payLink.hidden = false;
      var link = payLink.querySelector('a');
      link.href = state.pay_url;
      link.textContent = state.order_status === 'requires_action' ? 'Finish authentication'
        : state.order_status === 'failed' ? 'Try another card' : 'Pay now';
    } else {
      payLink.hidden = true;
    }
  }

  function stop(text) {
    spinner.hidden = true;
    if (text) { message.textContent = text; }
  }

  function poll() {
    // the page's status token answers the poll on its own (one read, see web/order_status.py);
    // without it (an admin's view of a buyer's order) the session cookie does
    var headers = { 'Accept': 'application/json' };
    if (root.dataset.statusToken) { headers.Authorization = 'Bearer ' + root.dataset.statusToken; }
    fetch(root.dataset.statusUrl, { headers: headers, credentials: 'same-origin' })
      .then(function (response) {
        if (!response.ok) { throw new Error('HTTP ' + response.status); }
        return response.json();
      })
      .then(function (state) {
        render(state);
        if (state.settled) { stop(); root.dataset.settled = 'true'; return; }
        schedule();
      })
      .catch(function () { schedule(); });
  }

  function schedule() {
    if (Date.now() - started > giveUpAfter) {
      stop('This is taking longer than usual. Your payment is safe: refresh this page in a ' +
           'few minutes, or check your orders later. We will not charge you twice.');
      return;
    }
    window.setTimeout(poll, delay);
    delay = Math.min(Math.round(delay * 1.5), maxDelay);
  }

  schedule();
})();

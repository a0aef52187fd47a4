// Pay page: the Payment Element for a new card, or a saved card confirmed on the server.
// Written against Stripe.js's public API only (the sandbox serves a stand-in with the same API).
(function () {
  'use strict';
  var root = document.querySelector('[data-pay]');
  if (!root || typeof Stripe !== 'function') { return; }
  var stripe = Stripe(root.dataset.publishableKey);
  var clientSecret = root.dataset.clientSecret;
  var errorBox = root.querySelector('[data-pay-error]');

  function showError(message) {
    errorBox.textContent = message || 'Something went wrong. Please try again.';
    errorBox.hidden = false;
    errorBox.focus && errorBox.focus();
  }
  function clearError() { errorBox.hidden = true; errorBox.textContent = ''; }
  function goToStatus() { window.location.assign(root.dataset.statusUrl); }

  // --- a new card: Payment Element + confirmPayment (redirects to the status page) ---------
  var elements = stripe.elements({ clientSecret: clientSecret,
    appearance: { variables: { colorPrimary: '#4f46e5', borderRadius: '8px' } } });
  var paymentElement = elements.create('payment');
  var newCardForm = root.querySelector('[data-new-card-form]');
  var submit = newCardForm.querySelector('[data-submit]');
  paymentElement.mount('#payment-element');
  paymentElement.on('ready', function () { submit.disabled = false; });

  newCardForm.addEventListener('submit', function (event) {
    event.preventDefault();
    clearError();
    submit.disabled = true;
    stripe.confirmPayment({ elements: elements, confirmParams: { return_url: root.dataset.returnUrl } })
      .then(function (result) {
        // Only reached when the payment did not redirect: a decline, a validation error...
        if (result.error) { showError(result.error.message); }
        submit.disabled = false;
      });
  });

  // --- a saved card: the server confirms; 3-D Secure is finished here ----------------------
  function finishAuthentication(secret) {
    return stripe.handleNextAction({ clientSecret: secret }).then(function (result) {
      if (result.error) { showError(result.error.message); return; }
      goToStatus();
    });
  }

  var savedForm = root.querySelector('[data-saved-card-form]');
  if (savedForm) {
    savedForm.addEventListener('submit', function (event) {
      event.preventDefault();
      clearError();
      var button = savedForm.querySelector('button[type=submit]');
      button.disabled = true;
      var data = new FormData(savedForm);
      fetch(savedForm.action, {
        method: 'POST', body: data, credentials: 'same-origin',
        headers: { 'Accept': 'application/json', 'X-CSRFToken': data.get('csrf_token') }
      }).then(function (response) {
        return response.json().then(function (body) {
          return { ok: response.ok, status: response.status, body: body };
        });
      }).then(function (reply) {
        var body = reply.body;
        if (reply.status === 409 && body.error && body.error.code === 'order_not_payable') {
          goToStatus(); return;  // paid (or closed) meanwhile, perhaps in another tab
        }
        if (!reply.ok) { showError(body.error && body.error.message); return; }
        if (body.order_status === 'requires_action' && body.client_secret) {
          return finishAuthentication(body.client_secret);
        }
        if (body.order_status === 'failed') { showError(body.message); return; }
        goToStatus();
      }).catch(function () {
        showError('We could not reach the store. Check your connection and try again.');
      }).then(function () { button.disabled = false; });
    });
  }

  // Arrived here to finish 3-D Secure for a payment that needs it.
  if (root.dataset.requiresAction === 'true') { finishAuthentication(clientSecret); }
})();

// Add a card: the Payment Element on a SetupIntent, confirmed with stripe.confirmSetup
// (3-D Secure opens when the card asks); Stripe.js returns to the cards page.
(function () {
  'use strict';
  var root = document.querySelector('[data-setup-card]');
  if (!root || typeof Stripe !== 'function') { return; }
  var stripe = Stripe(root.dataset.publishableKey);
  var errorBox = root.querySelector('[data-setup-error]');
  var form = root.querySelector('[data-setup-form]');
  var submit = form.querySelector('[data-submit]');
  var elements = stripe.elements({ clientSecret: root.dataset.clientSecret,
    appearance: { variables: { colorPrimary: '#4f46e5', borderRadius: '8px' } } });
  var paymentElement = elements.create('payment');
  paymentElement.mount('#payment-element');
  paymentElement.on('ready', function () { submit.disabled = false; });

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    submit.disabled = true;
    stripe.confirmSetup({ elements: elements, confirmParams: { return_url: root.dataset.returnUrl } })
      .then(function (result) {
        // only reached when Stripe.js did not redirect: a decline, failed authentication...
        if (result.error) {
          errorBox.textContent = result.error.message || 'Your card could not be saved.';
          errorBox.hidden = false;
        }
        submit.disabled = false;
      });
  });
})();

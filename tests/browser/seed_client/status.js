// The success (and cancel) page: polls check-payment-status until the status is final, and says
// what each of the seed's seven statuses means for the buyer.
const MESSAGES = {
  paid: 'Payment received. Thank you!',
  unpaid: 'We are waiting for your payment…',
  processing: 'Your payment is on its way (a bank debit can take a few days). We will email you.',
  expired: 'This checkout expired before it was paid. Nothing was charged.',
  failed: 'The payment failed. Nothing was charged; please try again.',
  canceled: 'Checkout was canceled. Nothing was charged.',
  no_payment_required: 'Nothing to pay: your order is complete.',
};
const FINAL = new Set(['paid', 'expired', 'failed', 'canceled', 'no_payment_required']);
const params = new URLSearchParams(window.location.search);
const sessionId = params.get('session_id') || window.sessionStorage.getItem('sessionId');
window.statusHistory = [];

document.getElementById('title').textContent =
  params.get('outcome') === 'cancel' ? 'Checkout canceled' : 'Thank you for your order';

async function poll() {
  let delay = 1000;
  try {
    const {status, retryAfter} = await checkPaymentStatus(sessionId);
    if (status === null) {
      delay = retryAfter * 1000;
    } else {
      window.statusHistory.push(status);
      const element = document.getElementById('status');
      element.textContent = status;
      element.dataset.status = status;
      document.getElementById('message').textContent = MESSAGES[status] || status;
      if (FINAL.has(status)) return;
      if (status === 'processing') delay = 5000;
    }
  } catch (error) {
    document.getElementById('message').textContent = String(error);
  }
  window.setTimeout(poll, delay);
}

poll();

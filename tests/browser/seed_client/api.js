// The seed's client: the two calls of the seed's payment API document, as a React/Next.js front
// end makes them -- no cookies, no CSRF token, another origin. API_BASE_URL comes from config.js.
const API_BASE_URL = window.SEED_CONFIG.apiBaseUrl;

async function createCheckoutSession(priceId) {
  // successUrl/cancelUrl: this site's own pages (its origin is in the store's API_CORS_ORIGINS)
  const response = await fetch(`${API_BASE_URL}/create-checkout-session`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({
      priceId,
      successUrl: `${window.location.origin}/status.html?outcome=success`,
      cancelUrl: `${window.location.origin}/status.html?outcome=cancel`,
    }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`${body.error.code}: ${body.error.message}`);
  return body; // {url, sessionId}
}

async function checkPaymentStatus(sessionId) {
  const response = await fetch(`${API_BASE_URL}/check-payment-status/${encodeURIComponent(sessionId)}`);
  if (response.status === 429) {
    return {status: null, retryAfter: Number(response.headers.get('Retry-After') || 60)};
  }
  const body = await response.json();
  if (!response.ok) throw new Error(`${body.error.code}: ${body.error.message}`);
  return body; // {status}
}

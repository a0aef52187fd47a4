// The seed's client: the two calls of the seed's payment API document, as a React/Next.js front
// end makes them -- no cookies, no CSRF token, another origin. API_BASE_URL comes from config.js.
const API_BASE_URL = window.SEED_CONFIG.apiBaseUrl;

async function createCheckoutSession(priceId, {ownPages = true} = {}) {
  // ownPages: come back to this site's own pages (its origin is in the store's API_CORS_ORIGINS);
  // without them the body is exactly the seed's ({priceId}) and Checkout returns to the store
  const body = ownPages ? {
    priceId,
    successUrl: `${window.location.origin}/status.html?outcome=success`,
    cancelUrl: `${window.location.origin}/status.html?outcome=cancel`,
  } : {priceId};
  const response = await fetch(`${API_BASE_URL}/create-checkout-session`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
  return answer; // {url, sessionId}
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

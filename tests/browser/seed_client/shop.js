// The catalog from GET /api/prices; "Buy" starts Checkout and sends the browser there.
function formatAmount(amount, currency) {
  return new Intl.NumberFormat('en-US', {style: 'currency', currency: currency.toUpperCase()}).format(amount / 100);
}

async function buy(priceId) {
  try {
    // ?returns=store: the seed's call unchanged, no return URLs of ours
    const ownPages = new URLSearchParams(window.location.search).get('returns') !== 'store';
    const {url, sessionId} = await createCheckoutSession(priceId, {ownPages});
    window.sessionStorage.setItem('sessionId', sessionId);
    window.location.href = url;
  } catch (error) {
    document.getElementById('error').textContent = error.message;
  }
}

async function showPrices() {
  const response = await fetch(`${API_BASE_URL}/prices`);
  const {prices} = await response.json();
  const list = document.getElementById('prices');
  for (const price of prices) {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = `Buy ${price.productName} (${formatAmount(price.amount, price.currency)})`;
    button.dataset.lookupKey = price.lookupKey;
    button.addEventListener('click', () => buy(price.priceId));
    item.append(button);
    list.append(item);
  }
  document.body.dataset.ready = 'true';
}

showPrices().catch((error) => { document.getElementById('error').textContent = String(error); });

/*
 * Stripe.js stand-in for the Storefront sandbox (served at {sandbox}/v3/).
 *
 * Implements, with Stripe.js's public names, arguments, promises and result shapes, the parts
 * of https://js.stripe.com/v3/ a store uses: Stripe(key), stripe.elements(...), the Payment
 * Element (card, SEPA Direct Debit and US bank account), confirmPayment / confirmSetup, createPaymentMethod,
 * handleNextAction, retrievePaymentIntent / retrieveSetupIntent, and a 3-D Secure challenge
 * overlay. It talks only to the sandbox it was loaded from (the origin of its own <script src>).
 * No build step, no dependencies, no external requests.
 */
(function (global) {
  'use strict';

  if (global.Stripe && global.Stripe.__sandbox) { return; }

  // --- where the sandbox is: the origin this script was loaded from ------------------------
  var API_BASE = (function () {
    var script = document.currentScript;
    if (!script) {
      var all = document.getElementsByTagName('script');
      for (var i = all.length - 1; i >= 0; i--) {
        if (/\/v3\/?(\?.*)?$/.test(all[i].src || '')) { script = all[i]; break; }
      }
    }
    try { return new URL(script.src, global.location.href).origin; }
    catch (e) { return global.location.origin; }
  })();

  // --- errors -------------------------------------------------------------------------------
  function IntegrationError(message) {
    var err = new Error(message);
    err.name = 'IntegrationError';
    Object.setPrototypeOf(err, IntegrationError.prototype);
    return err;
  }
  IntegrationError.prototype = Object.create(Error.prototype);
  IntegrationError.prototype.constructor = IntegrationError;
  IntegrationError.prototype.name = 'IntegrationError';

  var MESSAGES = {
    incomplete_number: 'Your card number is incomplete.',
    invalid_number: 'Your card number is invalid.',
    incomplete_expiry: "Your card's expiration date is incomplete.",
    invalid_expiry_month: "Your card's expiration date is invalid.",
    invalid_expiry_month_past: "Your card's expiration date is in the past.",
    invalid_expiry_year_past: "Your card's expiration year is in the past.",
    invalid_expiry_year: "Your card's expiration year is invalid.",
    incomplete_cvc: "Your card's security code is incomplete.",
    incomplete_zip: 'Your ZIP is incomplete.',
    incomplete_postal_code: 'Your postal code is incomplete.',
    incomplete_name: 'Please provide your full name.',
    incomplete_email: 'Your email address is incomplete.',
    invalid_email: 'Your email address is invalid.',
    incomplete_iban: 'Your IBAN is incomplete.',
    invalid_iban: 'Your IBAN is invalid.',
    invalid_iban_country_code: 'Your IBAN is invalid.',
    incomplete_routing_number: 'Your routing number is incomplete.',
    invalid_routing_number: 'Your routing number is invalid.',
    incomplete_account_number: 'Your account number is incomplete.'
  };

  function validationError(code, param) {
    var e = { type: 'validation_error', code: code, message: MESSAGES[code] || 'Invalid value.' };
    if (param) { e.param = param; }
    return e;
  }

  function connectionError() {
    return { type: 'api_connection_error',
             message: 'An error occurred with our connection to Stripe. Request was retried 0 times.' };
  }

  // --- HTTP ---------------------------------------------------------------------------------
  function encode(params) {
    var pairs = [];
    function walk(prefix, value) {
      if (value === undefined || typeof value === 'function') { return; }
      if (value === null) { pairs.push([prefix, '']); return; }
      if (Array.isArray(value)) {
        value.forEach(function (v, i) { walk(prefix + '[' + i + ']', v); });
        return;
      }
      if (typeof value === 'object') {
        Object.keys(value).forEach(function (k) { walk(prefix ? prefix + '[' + k + ']' : k, value[k]); });
        return;
      }
      pairs.push([prefix, String(value)]);
    }
    walk('', params || {});
    return pairs.map(function (p) {
      return encodeURIComponent(p[0]) + '=' + encodeURIComponent(p[1]);
    }).join('&');
  }

  function request(key, method, path, params) {
    var url = API_BASE + path;
    var init = { method: method, headers: { Authorization: 'Bearer ' + key }, credentials: 'omit' };
    if (method === 'GET') {
      var q = encode(params);
      if (q) { url += '?' + q; }
    } else {
      init.headers['Content-Type'] = 'application/x-www-form-urlencoded';
      init.body = encode(params);
    }
    return fetch(url, init).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { return { error: body && body.error ? body.error : connectionError() }; }
        return { body: body };
      });
    }, function () { return { error: connectionError() }; })
      .catch(function () { return { error: connectionError() }; });
  }

  function intentIdFromSecret(secret, kind) {
    var prefix = kind === 'setup' ? 'seti_' : 'pi_';
    if (typeof secret !== 'string' || secret.indexOf(prefix) !== 0 || secret.indexOf('_secret_') < 0) {
      return null;
    }
    return secret.split('_secret_')[0];
  }

  function kindOfSecret(secret) {
    if (typeof secret !== 'string') { return null; }
    if (secret.indexOf('seti_') === 0 && secret.indexOf('_secret_') > 0) { return 'setup'; }
    if (secret.indexOf('pi_') === 0 && secret.indexOf('_secret_') > 0) { return 'payment'; }
    return null;
  }

  function appendQuery(url, params) {
    var u = new URL(url, global.location.href);
    Object.keys(params).forEach(function (k) { u.searchParams.set(k, params[k]); });
    return u.toString();
  }

  function redirectStatus(intent) {
    if (intent.status === 'succeeded' || intent.status === 'requires_capture') { return 'succeeded'; }
    if (intent.status === 'processing') { return 'processing'; }
    return 'failed';
  }

  // --- card helpers ---------------------------------------------------------------------------
  var BRANDS = [
    { brand: 'amex', label: 'American Express', re: /^3[47]/, lengths: [15], cvc: 4, gaps: [4, 10] },
    { brand: 'diners', label: 'Diners Club', re: /^(36|30[0-5]|3095|38|39)/, lengths: [14, 16], cvc: 3, gaps: [4, 10] },
    { brand: 'discover', label: 'Discover', re: /^(6011|65|64[4-9]|622)/, lengths: [16], cvc: 3, gaps: [4, 8, 12] },
    { brand: 'jcb', label: 'JCB', re: /^35/, lengths: [16], cvc: 3, gaps: [4, 8, 12] },
    { brand: 'unionpay', label: 'UnionPay', re: /^62/, lengths: [16, 17, 18, 19], cvc: 3, gaps: [4, 8, 12] },
    { brand: 'mastercard', label: 'Mastercard', re: /^(5[1-5]|222[1-9]|22[3-9]|2[3-6]|27[01]|2720)/, lengths: [16], cvc: 3, gaps: [4, 8, 12] },
    { brand: 'visa', label: 'Visa', re: /^4/, lengths: [16], cvc: 3, gaps: [4, 8, 12] }
  ];
  var UNKNOWN = { brand: 'unknown', label: '', re: /^/, lengths: [16], cvc: 3, gaps: [4, 8, 12] };

  function brandOf(digits) {
    for (var i = 0; i < BRANDS.length; i++) {
      if (BRANDS[i].re.test(digits)) {
        var b = BRANDS[i];
        if (b.brand === 'diners' && /^36/.test(digits)) { return Object.assign({}, b, { lengths: [14], gaps: [4, 10] }); }
        if (b.brand === 'diners') { return Object.assign({}, b, { lengths: [14, 16], gaps: digits.length > 14 ? [4, 8, 12] : [4, 10] }); }
        return b;
      }
    }
    return UNKNOWN;
  }

  function luhn(digits) {
    var sum = 0;
    for (var i = 0; i < digits.length; i++) {
      var d = +digits[digits.length - 1 - i];
      if (i % 2) { d *= 2; if (d > 9) { d -= 9; } }
      sum += d;
    }
    return digits.length > 0 && sum % 10 === 0;
  }

  function formatNumber(digits) {
    var info = brandOf(digits);
    var out = '';
    for (var i = 0; i < digits.length; i++) {
      if (info.gaps.indexOf(i) >= 0) { out += ' '; }
      out += digits[i];
    }
    return out;
  }

  function onlyDigits(s) { return String(s || '').replace(/\D/g, ''); }

  function numberState(digits) {
    var info = brandOf(digits);
    var max = Math.max.apply(null, info.lengths);
    if (!digits) { return { empty: true, complete: false, error: 'incomplete_number', showNow: false }; }
    if (info.lengths.indexOf(digits.length) >= 0 && luhn(digits)) {
      return { empty: false, complete: true, error: null };
    }
    if (digits.length >= max) { return { empty: false, complete: false, error: 'invalid_number', showNow: true }; }
    if (info.lengths.indexOf(digits.length) >= 0) { return { empty: false, complete: false, error: 'invalid_number', showNow: false }; }
    return { empty: false, complete: false, error: 'incomplete_number', showNow: false };
  }

  function formatExpiry(raw, deleting) {
    var d = onlyDigits(raw).slice(0, 4);
    if (d.length === 1 && +d > 1) { d = '0' + d; }
    if (d.length >= 2 && +d.slice(0, 2) > 12) { d = '0' + d.slice(0, 1) + d.slice(1, 3); }
    if (d.length >= 2 && d.slice(0, 2) === '00') { d = '0'; }
    if (d.length > 2) { return d.slice(0, 2) + ' / ' + d.slice(2); }
    if (d.length === 2 && !deleting) { return d + ' / '; }
    return d;
  }

  function expiryState(value) {
    var d = onlyDigits(value);
    if (!d) { return { empty: true, complete: false, error: 'incomplete_expiry' }; }
    if (d.length < 4) { return { empty: false, complete: false, error: 'incomplete_expiry' }; }
    var month = +d.slice(0, 2), year = 2000 + (+d.slice(2, 4));
    var now = new Date(), thisYear = now.getFullYear(), thisMonth = now.getMonth() + 1;
    if (month < 1 || month > 12) { return { empty: false, complete: false, error: 'invalid_expiry_month', showNow: true }; }
    if (year < thisYear) { return { empty: false, complete: false, error: 'invalid_expiry_year_past', showNow: true }; }
    if (year === thisYear && month < thisMonth) { return { empty: false, complete: false, error: 'invalid_expiry_month_past', showNow: true }; }
    if (year > thisYear + 50) { return { empty: false, complete: false, error: 'invalid_expiry_year', showNow: true }; }
    return { empty: false, complete: true, error: null, month: month, year: year };
  }

  function ibanOk(iban) {
    if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(iban)) { return false; }
    var moved = iban.slice(4) + iban.slice(0, 4), rem = 0;
    for (var i = 0; i < moved.length; i++) {
      var c = moved[i], v = /\d/.test(c) ? c : String(c.charCodeAt(0) - 55);
      for (var j = 0; j < v.length; j++) { rem = (rem * 10 + (+v[j])) % 97; }
    }
    return rem === 1;
  }

  var IBAN_LENGTHS = { AT: 20, BE: 16, DE: 22, ES: 24, FR: 27, IE: 22, IT: 27, LU: 20, NL: 18, PT: 25, FI: 18 };

  // --- styles ---------------------------------------------------------------------------------
  var CSS = [
    '.sbx-pe{--sbx-primary:#0570de;--sbx-bg:#fff;--sbx-text:#30313d;--sbx-muted:#6d6e78;--sbx-danger:#df1b41;',
    '--sbx-border:#e6e6e6;--sbx-radius:6px;--sbx-font:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Ubuntu,sans-serif;',
    '--sbx-space:4px;font-family:var(--sbx-font);color:var(--sbx-text);font-size:15px;line-height:1.4;text-align:left}',
    '.sbx-pe *,.sbx-pe *::before,.sbx-pe *::after{box-sizing:border-box}',
    '.sbx-tabs{display:flex;gap:calc(var(--sbx-space)*3);margin:0 0 calc(var(--sbx-space)*4);padding:0;border:0}',
    '.sbx-tab{flex:1 1 0;min-width:0;text-align:left;padding:calc(var(--sbx-space)*3);border:1px solid var(--sbx-border);border-radius:var(--sbx-radius);',
    'background:var(--sbx-bg);color:var(--sbx-muted);font:inherit;font-size:14px;font-weight:600;cursor:pointer;box-shadow:0 1px 1px rgba(0,0,0,.03),0 3px 6px rgba(0,0,0,.02)}',
    '.sbx-tab[aria-selected="true"]{color:var(--sbx-primary);border-color:var(--sbx-primary);box-shadow:0 0 0 1px var(--sbx-primary)}',
    '.sbx-tab:focus-visible,.sbx-input:focus{outline:none;border-color:var(--sbx-primary);box-shadow:0 0 0 3px color-mix(in srgb,var(--sbx-primary) 25%,transparent)}',
    '.sbx-tab-icon{display:block;font-size:18px;line-height:1;margin-bottom:6px}',
    '.sbx-row{display:flex;gap:calc(var(--sbx-space)*3);margin-bottom:calc(var(--sbx-space)*3)}',
    '.sbx-field{flex:1 1 0;min-width:0;position:relative}',
    '.sbx-label{display:block;font-size:14px;margin-bottom:calc(var(--sbx-space)*1);color:var(--sbx-text)}',
    '.sbx-input{display:block;width:100%;padding:calc(var(--sbx-space)*3);font:inherit;font-size:16px;color:var(--sbx-text);background:var(--sbx-bg);',
    'border:1px solid var(--sbx-border);border-radius:var(--sbx-radius);box-shadow:0 1px 1px rgba(0,0,0,.03),0 3px 6px rgba(0,0,0,.02);transition:border-color .15s,box-shadow .15s;-webkit-appearance:none;appearance:none}',
    '.sbx-input::placeholder{color:#87898f}',
    '.sbx-input[aria-invalid="true"]{border-color:var(--sbx-danger);color:var(--sbx-danger);box-shadow:0 0 0 1px var(--sbx-danger)}',
    '.sbx-number{padding-right:110px}',
    '.sbx-input-wrap{position:relative}',
    '.sbx-brand{position:absolute;right:10px;top:50%;transform:translateY(-50%);font-size:11px;font-weight:700;letter-spacing:.04em;padding:2px 6px;border-radius:4px;',
    'background:#f1f3f5;color:#1a1f36;text-transform:uppercase;pointer-events:none}',
    '.sbx-brand[data-brand="visa"]{background:#1a1f71;color:#fff}.sbx-brand[data-brand="mastercard"]{background:#eb001b;color:#fff}',
    '.sbx-brand[data-brand="amex"]{background:#2e77bb;color:#fff}.sbx-brand[data-brand="discover"]{background:#ff6000;color:#fff}',
    '.sbx-error{color:var(--sbx-danger);font-size:14px;margin-top:calc(var(--sbx-space)*1);min-height:0}',
    '.sbx-error:empty{display:none}',
    '.sbx-note{color:var(--sbx-muted);font-size:12px;margin:calc(var(--sbx-space)*2) 0 0}',
    '.sbx-test{display:inline-block;font-size:11px;font-weight:700;color:#a04100;background:#ffde92;border-radius:4px;padding:1px 6px;margin-bottom:calc(var(--sbx-space)*3)}',
    '.sbx-select{background-image:linear-gradient(45deg,transparent 50%,#6d6e78 50%),linear-gradient(135deg,#6d6e78 50%,transparent 50%);',
    'background-position:calc(100% - 18px) 50%,calc(100% - 13px) 50%;background-size:5px 5px;background-repeat:no-repeat;padding-right:32px}',
    '.sbx-hidden{display:none!important}',
    '.sbx-sr{position:absolute!important;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}',
    '.sbx-overlay{position:fixed;inset:0;z-index:2147483647;background:rgba(10,20,40,.55);display:flex;align-items:center;justify-content:center;padding:16px}',
    '.sbx-modal{background:#fff;border-radius:10px;box-shadow:0 20px 60px rgba(0,0,0,.35);width:min(520px,100%);max-height:calc(100vh - 32px);display:flex;flex-direction:column;overflow:hidden;',
    'font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,sans-serif}',
    '.sbx-modal-head{display:flex;align-items:center;justify-content:space-between;padding:12px 16px;border-bottom:1px solid #e6e6e6}',
    '.sbx-modal-title{font-size:15px;font-weight:600;margin:0;color:#30313d}',
    '.sbx-modal-close{border:0;background:transparent;font-size:22px;line-height:1;cursor:pointer;color:#6d6e78;padding:4px 8px;border-radius:4px}',
    '.sbx-modal-close:focus-visible{outline:2px solid #0570de}',
    '.sbx-modal iframe{border:0;width:100%;height:440px;display:block}',
    '.sbx-mini .sbx-input{margin-bottom:calc(var(--sbx-space)*3)}'
  ].join('\n');

  function injectStyles() {
    if (document.getElementById('sbx-stripe-styles')) { return; }
    var style = document.createElement('style');
    style.id = 'sbx-stripe-styles';
    style.textContent = CSS;
    (document.head || document.documentElement).appendChild(style);
  }

  function applyAppearance(node, appearance) {
    appearance = appearance || {};
    var v = appearance.variables || {};
    if (appearance.theme === 'night') {
      node.style.setProperty('--sbx-bg', '#30313d'); node.style.setProperty('--sbx-text', '#fff');
      node.style.setProperty('--sbx-border', '#424353'); node.style.setProperty('--sbx-muted', '#a3a3ad');
    }
    var map = { colorPrimary: '--sbx-primary', colorBackground: '--sbx-bg', colorText: '--sbx-text',
                colorDanger: '--sbx-danger', colorTextSecondary: '--sbx-muted', borderRadius: '--sbx-radius',
                fontFamily: '--sbx-font', spacingUnit: '--sbx-space' };
    Object.keys(map).forEach(function (k) { if (v[k]) { node.style.setProperty(map[k], v[k]); } });
  }

  var uid = 0;
  function nextId(prefix) { uid += 1; return 'sbx-' + prefix + '-' + uid; }

  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { el.textContent = attrs[k]; }
      else if (attrs[k] !== undefined && attrs[k] !== null && attrs[k] !== false) { el.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { el.appendChild(c); } });
    return el;
  }

  // --- events mixin -----------------------------------------------------------------------------
  var EVENT_NAMES = ['change', 'ready', 'focus', 'blur', 'escape', 'click', 'loaderror', 'loaderstart',
                     'networkschange', 'confirm', 'cancel', 'shippingaddresschange', 'shippingratechange'];

  function Emitter() { this._handlers = {}; }
  Emitter.prototype.on = function (event, handler) {
    if (EVENT_NAMES.indexOf(event) < 0) {
      throw IntegrationError('Unrecognized event type: ' + event);
    }
    if (typeof handler !== 'function') {
      throw IntegrationError('A handler function is required for the ' + event + ' event.');
    }
    (this._handlers[event] = this._handlers[event] || []).push({ fn: handler, once: false });
    return this;
  };
  Emitter.prototype.addEventListener = Emitter.prototype.on;
  Emitter.prototype.once = function (event, handler) {
    this.on(event, handler);
    this._handlers[event][this._handlers[event].length - 1].once = true;
    return this;
  };
  Emitter.prototype.off = function (event, handler) {
    if (!this._handlers[event]) { return this; }
    this._handlers[event] = handler ? this._handlers[event].filter(function (h) { return h.fn !== handler; }) : [];
    return this;
  };
  Emitter.prototype.removeEventListener = Emitter.prototype.off;
  Emitter.prototype._emit = function (event, payload) {
    var list = (this._handlers[event] || []).slice();
    this._handlers[event] = (this._handlers[event] || []).filter(function (h) { return !h.once; });
    list.forEach(function (h) {
      try { h.fn(payload); } catch (e) { setTimeout(function () { throw e; }); }
    });
  };

  // --- base element ---------------------------------------------------------------------------------
  function BaseElement(elements, type, options) {
    Emitter.call(this);
    this._elements = elements;
    this._type = type;
    this._options = options || {};
    this._container = null;
    this._root = null;
    this._destroyed = false;
  }
  BaseElement.prototype = Object.create(Emitter.prototype);

  BaseElement.prototype.mount = function (target) {
    if (this._destroyed) {
      throw IntegrationError('This Element has already been destroyed. Please create a new one.');
    }
    var node = target;
    if (typeof target === 'string') {
      node = document.querySelector(target);
      if (!node) {
        throw IntegrationError('The selector you specified (' + target + ') applies to no DOM elements that are currently on the page.\nMake sure the element exists on the page before calling mount().');
      }
    }
    if (!node || node.nodeType !== 1) {
      throw IntegrationError('Invalid DOM element. Make sure to call mount() with a valid DOM element or selector.');
    }
    if (this._container) {
      throw IntegrationError('This Element is already mounted. Use `unmount()` to unmount the Element before re-mounting.');
    }
    injectStyles();
    this._container = node;
    this._root = h('div', { 'class': 'sbx-pe sbx-' + this._type, 'data-sandbox-element': this._type });
    applyAppearance(this._root, this._elements._options.appearance);
    node.appendChild(this._root);
    if (node.classList) { node.classList.add('StripeElement'); }
    this._render();
    var self = this;
    this._ready().then(function () {
      if (self._root) { self._emit('ready', { elementType: self._type }); }
    }, function (error) {
      self._emit('loaderror', { elementType: self._type, error: error });
    });
  };
  BaseElement.prototype._render = function () {};
  BaseElement.prototype._ready = function () { return Promise.resolve(); };
  BaseElement.prototype.unmount = function () {
    if (this._root && this._root.parentNode) { this._root.parentNode.removeChild(this._root); }
    if (this._container && this._container.classList) { this._container.classList.remove('StripeElement'); }
    this._root = null;
    this._container = null;
  };
  BaseElement.prototype.destroy = function () {
    this.unmount();
    this._destroyed = true;
    this._elements._forget(this);
  };
  BaseElement.prototype.update = function (options) {
    Object.assign(this._options, options || {});
  };
  BaseElement.prototype.focus = function () {
    var input = this._root && this._root.querySelector('input,select,button');
    if (input) { input.focus(); }
  };
  BaseElement.prototype.blur = function () {
    var active = document.activeElement;
    if (this._root && active && this._root.contains(active)) { active.blur(); }
  };
  BaseElement.prototype.clear = function () {
    if (!this._root) { return; }
    Array.prototype.forEach.call(this._root.querySelectorAll('input'), function (i) { i.value = ''; });
  };
  BaseElement.prototype.collapse = function () { return this; };
  BaseElement.prototype._validate = function () { return null; };

  // --- linkAuthentication: an email field -------------------------------------------------------------
  function LinkAuthenticationElement(elements, type, options) { BaseElement.call(this, elements, type, options); }
  LinkAuthenticationElement.prototype = Object.create(BaseElement.prototype);
  LinkAuthenticationElement.prototype._render = function () {
    var self = this, id = nextId('email');
    var dv = (this._options.defaultValues || {}).email || '';
    var input = h('input', { 'class': 'sbx-input', id: id, type: 'email', autocomplete: 'email', value: dv, name: 'email' });
    this._input = input;
    this._root.classList.add('sbx-mini');
    this._root.appendChild(h('label', { 'class': 'sbx-label', 'for': id, text: 'Email' }));
    this._root.appendChild(input);
    input.addEventListener('input', function () {
      var v = input.value.trim();
      self._emit('change', { elementType: 'linkAuthentication', empty: !v, complete: /.+@.+\..+/.test(v), value: { email: v } });
    });
    input.addEventListener('focus', function () { self._emit('focus', { elementType: self._type }); });
    input.addEventListener('blur', function () { self._emit('blur', { elementType: self._type }); });
  };

  // --- the Payment Element --------------------------------------------------------------------------
  var COUNTRIES = [['US', 'United States'], ['GB', 'United Kingdom'], ['CA', 'Canada'], ['AT', 'Austria'],
                   ['BE', 'Belgium'], ['DE', 'Germany'], ['ES', 'Spain'], ['FR', 'France'], ['IE', 'Ireland'],
                   ['IT', 'Italy'], ['NL', 'Netherlands'], ['AU', 'Australia'], ['JP', 'Japan']];
  var POSTAL_COUNTRIES = { US: 'ZIP', GB: 'Postal code', CA: 'Postal code' };
  var METHOD_LABELS = { card: 'Card', sepa_debit: 'SEPA Direct Debit', us_bank_account: 'US bank account' };
  var METHOD_ICONS = { card: '\u25AD', sepa_debit: '\u20AC', us_bank_account: '\u2302' };
  // Bank debits need the customer's mandate; Stripe.js asks Stripe to take it from the browser.
  var MANDATE_TYPES = ['sepa_debit', 'us_bank_account'];

  function routingOk(routing) {  // ABA routing number: 9 digits, 3-7-1 checksum
    if (!/^\d{9}$/.test(routing)) { return false; }
    var w = [3, 7, 1], sum = 0;
    for (var i = 0; i < 9; i++) { sum += Number(routing[i]) * w[i % 3]; }
    return sum % 10 === 0;
  }

  function PaymentElement(elements, type, options) {
    BaseElement.call(this, elements, type, options);
    this._types = ['card'];
    this._selected = 'card';
    this._fields = {};
    this._touched = {};
    this._lastChange = null;
  }
  PaymentElement.prototype = Object.create(BaseElement.prototype);

  PaymentElement.prototype._ready = function () {
    var self = this;
    return this._elements._loadIntent().then(function (intent) {
      var types = self._elements._methodTypes(intent);
      var supported = types.filter(function (t) { return METHOD_LABELS[t]; });
      self._types = supported.length ? supported : ['card'];
      if (self._types.indexOf(self._selected) < 0) { self._selected = self._types[0]; }
      if (self._root) { self._renderTabs(); self._showSelected(); self._changed(true); }
    });
  };

  PaymentElement.prototype._billingOption = function (name) {
    var f = (this._options.fields || {}).billingDetails;
    if (f === 'never') { return 'never'; }
    if (!f || typeof f !== 'object') { return 'auto'; }
    if (name === 'country' || name === 'postalCode') {
      var a = f.address;
      if (a === 'never') { return 'never'; }
      if (a && typeof a === 'object' && a[name] === 'never') { return 'never'; }
      return 'auto';
    }
    return f[name] === 'never' ? 'never' : 'auto';
  };

  PaymentElement.prototype._field = function (key, label, attrs) {
    var id = nextId(key), errId = id + '-error';
    var input = h(attrs.tag || 'input', Object.assign({ 'class': 'sbx-input', id: id, name: key,
      'aria-invalid': 'false', 'aria-describedby': errId }, attrs.attrs || {}));
    var error = h('div', { 'class': 'sbx-error', id: errId, role: 'alert', 'aria-live': 'polite' });
    var labelEl = h('label', { 'class': 'sbx-label', 'for': id, text: label });
    var wrap = h('div', { 'class': 'sbx-field', 'data-field': key }, [labelEl, input, error]);
    this._fields[key] = { input: input, error: error, wrap: wrap, label: labelEl };
    return wrap;
  };

  PaymentElement.prototype._render = function () {
    var self = this, root = this._root;
    var dv = this._options.defaultValues || {};
    var bd = dv.billingDetails || {};
    var address = bd.address || {};
    this._tabs = h('div', { 'class': 'sbx-tabs', role: 'tablist', 'aria-label': 'Payment method' });
    root.appendChild(this._tabs);

    // card panel
    var card = h('div', { 'class': 'sbx-panel', 'data-method': 'card', role: 'tabpanel' });
    var numberWrap = this._field('number', 'Card number', { attrs: { type: 'text', inputmode: 'numeric',
      autocomplete: 'cc-number', placeholder: '1234 1234 1234 1234', spellcheck: 'false', 'class': 'sbx-input sbx-number' } });
    this._brand = h('span', { 'class': 'sbx-brand sbx-hidden', 'data-brand': 'unknown', 'aria-hidden': 'true' });
    this._brandText = h('span', { 'class': 'sbx-sr', 'aria-live': 'polite' });
    var numberBox = h('div', { 'class': 'sbx-input-wrap' });
    numberWrap.insertBefore(numberBox, this._fields.number.input);
    numberBox.appendChild(this._fields.number.input);
    numberBox.appendChild(this._brand);
    numberWrap.appendChild(this._brandText);
    card.appendChild(h('div', { 'class': 'sbx-row' }, [numberWrap]));
    card.appendChild(h('div', { 'class': 'sbx-row' }, [
      this._field('expiry', 'Expiration date', { attrs: { type: 'text', inputmode: 'numeric', autocomplete: 'cc-exp', placeholder: 'MM / YY' } }),
      this._field('cvc', 'Security code', { attrs: { type: 'text', inputmode: 'numeric', autocomplete: 'cc-csc', placeholder: 'CVC', maxlength: '4' } })
    ]));
    var countrySelect = this._field('country', 'Country', { tag: 'select', attrs: { autocomplete: 'country', 'class': 'sbx-input sbx-select' } });
    var country = this._fields.country.input;
    COUNTRIES.forEach(function (c) { country.appendChild(h('option', { value: c[0], text: c[1] })); });
    country.value = COUNTRIES.some(function (c) { return c[0] === address.country; }) ? address.country : 'US';
    var postal = this._field('postal', 'ZIP', { attrs: { type: 'text', autocomplete: 'postal-code', placeholder: '12345', value: address.postal_code || '' } });
    var row = h('div', { 'class': 'sbx-row' }, [countrySelect, postal]);
    if (this._billingOption('country') === 'never') { countrySelect.classList.add('sbx-hidden'); }
    card.appendChild(row);
    this._cardPanel = card;
    root.appendChild(card);

    // SEPA panel
    var sepa = h('div', { 'class': 'sbx-panel sbx-hidden', 'data-method': 'sepa_debit', role: 'tabpanel' });
    if (this._billingOption('name') !== 'never') {
      sepa.appendChild(h('div', { 'class': 'sbx-row' }, [this._field('name', 'Full name', { attrs: { type: 'text', autocomplete: 'name', placeholder: 'First and last name', value: bd.name || '' } })]));
    }
    if (this._billingOption('email') !== 'never') {
      sepa.appendChild(h('div', { 'class': 'sbx-row' }, [this._field('email', 'Email', { attrs: { type: 'email', autocomplete: 'email', value: bd.email || '' } })]));
    }
    sepa.appendChild(h('div', { 'class': 'sbx-row' }, [this._field('iban', 'IBAN', { attrs: { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'DE00 0000 0000 0000 0000 00' } })]));
    var business = (this._options.business || {}).name || 'the merchant';
    sepa.appendChild(h('p', { 'class': 'sbx-note', text: 'By providing your payment information and confirming this payment, you authorise ' + business +
      ' and Stripe, our payment service provider, to send instructions to your bank to debit your account in accordance with those instructions. (Sandbox: no money moves.)' }));
    this._sepaPanel = sepa;
    root.appendChild(sepa);

    // US bank account (ACH Direct Debit) panel: account details entered by hand
    var ach = h('div', { 'class': 'sbx-panel sbx-hidden', 'data-method': 'us_bank_account', role: 'tabpanel' });
    if (this._billingOption('name') !== 'never') {
      ach.appendChild(h('div', { 'class': 'sbx-row' }, [this._field('ach_name', 'Full name', { attrs: { type: 'text', autocomplete: 'name', placeholder: 'First and last name', value: bd.name || '' } })]));
    }
    if (this._billingOption('email') !== 'never') {
      ach.appendChild(h('div', { 'class': 'sbx-row' }, [this._field('ach_email', 'Email', { attrs: { type: 'email', autocomplete: 'email', value: bd.email || '' } })]));
    }
    ach.appendChild(h('div', { 'class': 'sbx-row' }, [
      this._field('routing', 'Routing number', { attrs: { type: 'text', inputmode: 'numeric', autocomplete: 'off', spellcheck: 'false', placeholder: '110000000' } }),
      this._field('account', 'Account number', { attrs: { type: 'text', inputmode: 'numeric', autocomplete: 'off', spellcheck: 'false', placeholder: '000123456789' } })
    ]));
    var accountType = this._field('account_type', 'Account type', { tag: 'select', attrs: { 'class': 'sbx-input sbx-select' } });
    [['checking', 'Checking'], ['savings', 'Savings']].forEach(function (o) {
      self._fields.account_type.input.appendChild(h('option', { value: o[0], text: o[1] }));
    });
    ach.appendChild(h('div', { 'class': 'sbx-row' }, [accountType]));
    ach.appendChild(h('p', { 'class': 'sbx-note', 'data-mandate': 'us_bank_account', text: 'By confirming this payment, you authorize ' + business +
      ' to debit the bank account specified above for any amount owed for charges arising from your use of ' + business +
      '\u2019s services and/or purchase of products from ' + business + ', pursuant to ' + business +
      '\u2019s website and terms, until this authorization is revoked. You may amend or cancel this authorization at any time by providing notice to ' +
      business + ' with 30 (thirty) days notice. (Sandbox: no money moves.)' }));
    this._achPanel = ach;
    root.appendChild(ach);

    this._wireInputs();
    this._updatePostal();
    this._renderTabs();
    this._showSelected();
  };

  PaymentElement.prototype._renderTabs = function () {
    var self = this;
    this._tabs.innerHTML = '';
    if (this._types.length < 2) { this._tabs.classList.add('sbx-hidden'); return; }
    this._tabs.classList.remove('sbx-hidden');
    this._types.forEach(function (t) {
      var tab = h('button', { type: 'button', 'class': 'sbx-tab', role: 'tab', 'data-method': t,
        'aria-selected': String(t === self._selected), tabindex: t === self._selected ? '0' : '-1' },
        [h('span', { 'class': 'sbx-tab-icon', 'aria-hidden': 'true', text: METHOD_ICONS[t] }), document.createTextNode(METHOD_LABELS[t])]);
      tab.addEventListener('click', function () { self._select(t); });
      tab.addEventListener('keydown', function (e) {
        var i = self._types.indexOf(t);
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
          e.preventDefault();
          var n = self._types[(i + (e.key === 'ArrowRight' ? 1 : self._types.length - 1)) % self._types.length];
          self._select(n);
          var next = self._tabs.querySelector('[data-method="' + n + '"]');
          if (next) { next.focus(); }
        }
      });
      self._tabs.appendChild(tab);
    });
  };

  PaymentElement.prototype._select = function (type) {
    if (this._selected === type) { return; }
    this._selected = type;
    this._renderTabs();
    this._showSelected();
    this._changed(true);
  };

  // Only the chosen method's form is in the page (as in Stripe's iframe): the others are kept
  // aside, with what was typed in them, so labels such as "Full name" stay unique.
  PaymentElement.prototype._showSelected = function () {
    var self = this;
    var panels = { card: this._cardPanel, sepa_debit: this._sepaPanel, us_bank_account: this._achPanel };
    Object.keys(panels).forEach(function (t) {
      var panel = panels[t], chosen = t === self._selected;
      panel.classList.toggle('sbx-hidden', !chosen);
      if (!chosen && panel.parentNode) { panel.parentNode.removeChild(panel); }
      if (chosen && !panel.parentNode && self._root) { self._root.insertBefore(panel, self._tabs.nextSibling); }
    });
  };

  PaymentElement.prototype._updatePostal = function () {
    var c = this._fields.country.input.value;
    var label = POSTAL_COUNTRIES[c];
    var f = this._fields.postal;
    var hidden = !label || this._billingOption('postalCode') === 'never';
    f.wrap.classList.toggle('sbx-hidden', hidden);
    if (label) { f.label.textContent = label; f.input.placeholder = c === 'US' ? '12345' : (c === 'GB' ? 'WS11 1DB' : 'M5T 1T4'); }
    if (c === 'US') { f.input.setAttribute('inputmode', 'numeric'); } else { f.input.removeAttribute('inputmode'); }
  };

  PaymentElement.prototype._wireInputs = function () {
    var self = this, F = this._fields;
    function caretAfterDigits(input, formatted, digitsBefore) {
      var pos = 0, seen = 0;
      while (pos < formatted.length && seen < digitsBefore) { if (/\d/.test(formatted[pos])) { seen++; } pos++; }
      try { input.setSelectionRange(pos, pos); } catch (e) { /* not focused */ }
    }
    F.number.input.addEventListener('input', function () {
      var input = F.number.input;
      var caret = input.selectionStart == null ? input.value.length : input.selectionStart;
      var before = onlyDigits(input.value.slice(0, caret)).length;
      var digits = onlyDigits(input.value);
      var info = brandOf(digits);
      digits = digits.slice(0, Math.max.apply(null, info.lengths));
      var formatted = formatNumber(digits);
      input.value = formatted;
      if (document.activeElement === input) { caretAfterDigits(input, formatted, before); }
      self._showBrand(brandOf(digits));
      var st = numberState(digits);
      if (st.complete) { self._touched.number = true; }
      self._fieldChanged('number');
      if (st.complete && document.activeElement === input) { F.expiry.input.focus(); }
    });
    F.expiry.input.addEventListener('input', function (e) {
      var input = F.expiry.input;
      var deleting = e.inputType && e.inputType.indexOf('delete') === 0;
      input.value = formatExpiry(input.value, deleting);
      var st = expiryState(input.value);
      if (st.complete || st.showNow) { self._touched.expiry = true; }
      self._fieldChanged('expiry');
      if (st.complete && document.activeElement === input) { F.cvc.input.focus(); }
    });
    F.cvc.input.addEventListener('input', function () {
      var info = brandOf(onlyDigits(F.number.input.value));
      F.cvc.input.value = onlyDigits(F.cvc.input.value).slice(0, info.brand === 'unknown' ? 4 : info.cvc);
      self._fieldChanged('cvc');
    });
    F.country.input.addEventListener('change', function () { self._updatePostal(); self._fieldChanged('postal'); });
    F.postal.input.addEventListener('input', function () {
      if (F.country.input.value === 'US') { F.postal.input.value = onlyDigits(F.postal.input.value).slice(0, 5); }
      else { F.postal.input.value = F.postal.input.value.toUpperCase().slice(0, 10); }
      self._fieldChanged('postal');
    });
    F.iban.input.addEventListener('input', function () {
      var raw = F.iban.input.value.toUpperCase().replace(/[^A-Z0-9]/g, '').slice(0, 34);
      F.iban.input.value = raw.replace(/(.{4})/g, '$1 ').trim();
      var st = self._ibanState();
      if (st.complete || st.showNow) { self._touched.iban = true; }
      self._fieldChanged('iban');
    });
    ['name', 'email', 'ach_name', 'ach_email'].forEach(function (k) { if (F[k]) { F[k].input.addEventListener('input', function () { self._fieldChanged(k); }); } });
    [['routing', 9], ['account', 17]].forEach(function (pair) {
      var k = pair[0], input = F[k].input;
      input.addEventListener('input', function () {
        input.value = onlyDigits(input.value).slice(0, pair[1]);
        var st = self._state(k);
        if (st.complete || st.showNow) { self._touched[k] = true; }
        self._fieldChanged(k);
      });
    });
    F.account_type.input.addEventListener('change', function () { self._fieldChanged('account_type'); });
    Object.keys(F).forEach(function (k) {
      F[k].input.addEventListener('blur', function () {
        var v = F[k].input.value;
        if (v) { self._touched[k] = true; }
        self._showError(k);
        setTimeout(function () {
          if (self._root && !self._root.contains(document.activeElement)) { self._emit('blur', { elementType: 'payment' }); }
        }, 0);
      });
      F[k].input.addEventListener('focus', function () { self._emit('focus', { elementType: 'payment' }); });
      F[k].input.addEventListener('keydown', function (e) {
        if (e.key === 'Escape') { self._emit('escape', { elementType: 'payment' }); }
      });
    });
  };

  PaymentElement.prototype._showBrand = function (info) {
    var known = info.brand !== 'unknown';
    this._brand.classList.toggle('sbx-hidden', !known);
    this._brand.setAttribute('data-brand', info.brand);
    this._brand.textContent = known ? info.label : '';
    this._brandText.textContent = known ? 'Card brand: ' + info.label : '';
  };

  PaymentElement.prototype._ibanState = function () {
    var iban = this._fields.iban.input.value.replace(/\s/g, '');
    if (!iban) { return { empty: true, complete: false, error: 'incomplete_iban' }; }
    var expected = IBAN_LENGTHS[iban.slice(0, 2)];
    if (iban.length >= 2 && !/^[A-Z]{2}/.test(iban)) { return { empty: false, complete: false, error: 'invalid_iban_country_code', showNow: true }; }
    if (expected && iban.length < expected) { return { empty: false, complete: false, error: 'incomplete_iban' }; }
    if (!expected && iban.length < 15) { return { empty: false, complete: false, error: 'incomplete_iban' }; }
    if (!ibanOk(iban)) { return { empty: false, complete: false, error: 'invalid_iban', showNow: true }; }
    return { empty: false, complete: true, error: null, iban: iban };
  };

  PaymentElement.prototype._state = function (key) {
    var F = this._fields;
    var v = F[key].input.value.trim();
    switch (key) {
      case 'number': return numberState(onlyDigits(v));
      case 'expiry': return expiryState(v);
      case 'cvc': {
        var info = brandOf(onlyDigits(F.number.input.value));
        var need = info.brand === 'unknown' ? 3 : info.cvc;
        var d = onlyDigits(v);
        if (!d) { return { empty: true, complete: false, error: 'incomplete_cvc' }; }
        return d.length >= need ? { empty: false, complete: true, error: null } : { empty: false, complete: false, error: 'incomplete_cvc' };
      }
      case 'postal': {
        if (F.postal.wrap.classList.contains('sbx-hidden')) { return { empty: !v, complete: true, error: null }; }
        var us = F.country.input.value === 'US';
        var code = us ? 'incomplete_zip' : 'incomplete_postal_code';
        if (!v) { return { empty: true, complete: false, error: code }; }
        var ok = us ? /^\d{5}$/.test(v) : v.replace(/\s/g, '').length >= 3;
        return ok ? { empty: false, complete: true, error: null } : { empty: false, complete: false, error: code };
      }
      case 'country': return { empty: false, complete: true, error: null };
      case 'name': return v ? { empty: false, complete: true, error: null } : { empty: true, complete: false, error: 'incomplete_name' };
      case 'email':
        if (!v) { return { empty: true, complete: false, error: 'incomplete_email' }; }
        return /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v) ? { empty: false, complete: true, error: null } : { empty: false, complete: false, error: 'invalid_email' };
      case 'iban': return this._ibanState();
      case 'ach_name': return v ? { empty: false, complete: true, error: null } : { empty: true, complete: false, error: 'incomplete_name' };
      case 'ach_email':
        if (!v) { return { empty: true, complete: false, error: 'incomplete_email' }; }
        return /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v) ? { empty: false, complete: true, error: null } : { empty: false, complete: false, error: 'invalid_email' };
      case 'routing':
        if (!v) { return { empty: true, complete: false, error: 'incomplete_routing_number' }; }
        if (v.length < 9) { return { empty: false, complete: false, error: 'incomplete_routing_number' }; }
        return routingOk(v) ? { empty: false, complete: true, error: null } : { empty: false, complete: false, error: 'invalid_routing_number', showNow: true };
      case 'account':
        if (!v) { return { empty: true, complete: false, error: 'incomplete_account_number' }; }
        return v.length >= 4 ? { empty: false, complete: true, error: null } : { empty: false, complete: false, error: 'incomplete_account_number' };
      case 'account_type': return { empty: false, complete: true, error: null };
    }
    return { empty: true, complete: true, error: null };
  };

  PaymentElement.prototype._activeKeys = function () {
    var F = this._fields;
    if (this._selected === 'sepa_debit') { return ['name', 'email', 'iban'].filter(function (k) { return F[k]; }); }
    if (this._selected === 'us_bank_account') { return ['ach_name', 'ach_email', 'routing', 'account'].filter(function (k) { return F[k]; }); }
    return ['number', 'expiry', 'cvc', 'postal'];
  };

  PaymentElement.prototype._showError = function (key, force) {
    var f = this._fields[key];
    var st = this._state(key);
    var show = st.error && (force || st.showNow || (this._touched[key] && document.activeElement !== f.input));
    var hadError = f.input.getAttribute('aria-invalid') === 'true';
    if (st.error && hadError && !force) { show = true; }
    f.error.textContent = show ? MESSAGES[st.error] : '';
    f.input.setAttribute('aria-invalid', show ? 'true' : 'false');
    return st;
  };

  PaymentElement.prototype._fieldChanged = function (key) {
    this._showError(key);
    this._changed(false);
  };

  PaymentElement.prototype._changed = function (force) {
    var self = this, keys = this._activeKeys();
    var states = keys.map(function (k) { return self._state(k); });
    var empty = keys.every(function (k, i) { return k === 'postal' || states[i].empty; });
    var complete = states.every(function (s) { return s.complete; });
    var payload = { elementType: 'payment', empty: empty, complete: complete, collapsed: false,
                    value: { type: this._selected } };
    var sig = JSON.stringify(payload);
    if (!force && sig === this._lastChange) { return; }
    this._lastChange = sig;
    this._emit('change', payload);
  };

  PaymentElement.prototype._validate = function () {
    var self = this, first = null, firstKey = null;
    this._activeKeys().forEach(function (k) {
      self._touched[k] = true;
      var st = self._showError(k, true);
      if (st.error && !first) { first = st.error; firstKey = k; }
    });
    if (first) {
      var input = this._fields[firstKey].input;
      try { input.focus(); } catch (e) { /* ignore */ }
      return validationError(first);
    }
    return null;
  };

  PaymentElement.prototype._paymentMethodParams = function (extra) {
    var F = this._fields;
    extra = extra || {};
    var billing = JSON.parse(JSON.stringify(extra.billing_details || {}));
    var dv = (this._options.defaultValues || {}).billingDetails || {};
    var params = { type: this._selected };
    if (this._selected === 'card') {
      var exp = expiryState(F.expiry.input.value);
      params.card = { number: onlyDigits(F.number.input.value), exp_month: exp.month, exp_year: exp.year,
                      cvc: onlyDigits(F.cvc.input.value) };
      billing.address = billing.address || {};
      if (this._billingOption('country') !== 'never' && !billing.address.country) { billing.address.country = F.country.input.value; }
      if (!F.postal.wrap.classList.contains('sbx-hidden') && !billing.address.postal_code) { billing.address.postal_code = F.postal.input.value.trim(); }
      if (!Object.keys(billing.address).length) { delete billing.address; }
      if (!billing.name && dv.name) { billing.name = dv.name; }
      if (!billing.email && dv.email) { billing.email = dv.email; }
    } else if (this._selected === 'sepa_debit') {
      params.sepa_debit = { iban: F.iban.input.value.replace(/\s/g, '') };
      if (F.name) { billing.name = billing.name || F.name.input.value.trim(); }
      if (F.email) { billing.email = billing.email || F.email.input.value.trim(); }
      if (!billing.name && dv.name) { billing.name = dv.name; }
      if (!billing.email && dv.email) { billing.email = dv.email; }
    } else if (this._selected === 'us_bank_account') {
      params.us_bank_account = { routing_number: F.routing.input.value.trim(), account_number: F.account.input.value.trim(),
                                 account_holder_type: 'individual', account_type: F.account_type.input.value };
      if (F.ach_name) { billing.name = billing.name || F.ach_name.input.value.trim(); }
      if (F.ach_email) { billing.email = billing.email || F.ach_email.input.value.trim(); }
      if (!billing.name && dv.name) { billing.name = dv.name; }
      if (!billing.email && dv.email) { billing.email = dv.email; }
    }
    if (Object.keys(billing).length) { params.billing_details = billing; }
    if (extra.metadata) { params.metadata = extra.metadata; }
    if (extra.allow_redisplay) { params.allow_redisplay = extra.allow_redisplay; }
    return params;
  };

  PaymentElement.prototype.clear = function () {
    BaseElement.prototype.clear.call(this);
    this._touched = {};
    var self = this;
    Object.keys(this._fields).forEach(function (k) {
      self._fields[k].error.textContent = '';
      self._fields[k].input.setAttribute('aria-invalid', 'false');
    });
    this._showBrand(UNKNOWN);
    this._changed(true);
  };

  PaymentElement.prototype.update = function (options) {
    BaseElement.prototype.update.call(this, options);
    if (this._root && options && options.readOnly !== undefined) {
      var ro = !!options.readOnly;
      Array.prototype.forEach.call(this._root.querySelectorAll('input,select,button'), function (el) { el.disabled = ro; });
    }
  };

  // --- Elements group ---------------------------------------------------------------------------------
  var ELEMENT_TYPES = ['payment', 'linkAuthentication', 'address', 'expressCheckout', 'card', 'cardNumber',
                       'cardExpiry', 'cardCvc', 'paymentRequestButton', 'iban', 'idealBank', 'auBankAccount',
                       'fpxBank', 'p24Bank', 'epsBank', 'affirmMessage', 'afterpayClearpayMessage',
                       'paymentMethodMessaging', 'shippingAddress', 'issuingCardNumberDisplay'];

  function Elements(stripe, options) {
    this._stripe = stripe;
    this._options = Object.assign({}, options || {});
    this._elements = {};
    this._intentPromise = null;
    this._submitted = false;
    if (this._options.clientSecret) {
      this._kind = kindOfSecret(this._options.clientSecret);
      if (!this._kind) {
        throw IntegrationError('Invalid value for elements(): clientSecret should be a client secret of the form ${id}_secret_${secret}. You specified: ' + this._options.clientSecret + '.');
      }
    } else if (this._options.mode) {
      if (['payment', 'setup', 'subscription'].indexOf(this._options.mode) < 0) {
        throw IntegrationError('Invalid value for elements(): mode should be one of the following strings: payment, setup, subscription. You specified: ' + this._options.mode + '.');
      }
      if (this._options.mode !== 'setup' && (this._options.amount === undefined || !this._options.currency)) {
        if (this._options.amount === undefined) {
          throw IntegrationError('Missing value for elements(): amount should be a number when mode is ' + this._options.mode + '.');
        }
        throw IntegrationError('Missing value for elements(): currency should be a string.');
      }
      if (this._options.mode === 'setup' && !this._options.currency) {
        throw IntegrationError('Missing value for elements(): currency should be a string.');
      }
      this._kind = this._options.mode === 'setup' ? 'setup' : 'payment';
    } else {
      this._kind = null;
    }
  }

  Elements.prototype.create = function (type, options) {
    if (ELEMENT_TYPES.indexOf(type) < 0) {
      throw IntegrationError('A valid Element name must be provided. Valid Elements are: ' + ELEMENT_TYPES.join(', ') + '; you passed: ' + type + '.');
    }
    if (this._elements[type]) {
      throw IntegrationError('Can only create one Element of type ' + type + '.');
    }
    if (type === 'payment' && !this._kind) {
      throw IntegrationError('In order to create a payment element, you must pass a valid PaymentIntent or SetupIntent client secret, or a mode, when creating the Elements group.\n\n  e.g. stripe.elements({clientSecret: "{{CLIENT_SECRET}}"})');
    }
    var el;
    if (type === 'payment') { el = new PaymentElement(this, type, options); }
    else if (type === 'linkAuthentication') { el = new LinkAuthenticationElement(this, type, options); }
    else { el = new BaseElement(this, type, options); }
    this._elements[type] = el;
    return el;
  };

  Elements.prototype.getElement = function (type) { return this._elements[type] || null; };
  Elements.prototype._forget = function (el) {
    var self = this;
    Object.keys(this._elements).forEach(function (k) { if (self._elements[k] === el) { delete self._elements[k]; } });
  };

  Elements.prototype.update = function (options) {
    options = options || {};
    if (options.clientSecret) { throw IntegrationError('elements.update(): clientSecret cannot be updated. Create a new Elements group instead.'); }
    Object.assign(this._options, options);
    if (options.appearance) {
      var self = this;
      Object.keys(this._elements).forEach(function (k) {
        if (self._elements[k]._root) { applyAppearance(self._elements[k]._root, options.appearance); }
      });
    }
    if (options.mode) { this._kind = options.mode === 'setup' ? 'setup' : 'payment'; }
    var pe = this._elements.payment;
    if (pe && pe._root && (options.paymentMethodTypes || options.currency)) {
      pe._types = this._methodTypes(null).filter(function (t) { return METHOD_LABELS[t]; });
      if (!pe._types.length) { pe._types = ['card']; }
      if (pe._types.indexOf(pe._selected) < 0) { pe._selected = pe._types[0]; pe._showSelected(); }
      pe._renderTabs();
    }
  };

  Elements.prototype.fetchUpdates = function () {
    this._intentPromise = null;
    return this._loadIntent().then(function () { return {}; }, function (error) { return { error: error }; });
  };

  Elements.prototype._loadIntent = function () {
    if (!this._options.clientSecret) { return Promise.resolve(null); }
    if (!this._intentPromise) {
      var s = this._stripe, secret = this._options.clientSecret;
      this._intentPromise = s._retrieve(this._kind, secret).then(function (r) {
        if (r.error) { throw r.error; }
        return r.intent;
      });
    }
    return this._intentPromise;
  };

  Elements.prototype._methodTypes = function (intent) {
    if (intent && intent.payment_method_types) { return intent.payment_method_types; }
    if (this._options.paymentMethodTypes) { return this._options.paymentMethodTypes; }
    return ['card'];
  };

  Elements.prototype.submit = function () {
    var pe = this._elements.payment;
    var self = this;
    if (!pe || !pe._root) {
      return Promise.resolve({ error: { type: 'validation_error', code: 'incomplete',
        message: 'The Payment Element is not mounted.' } });
    }
    return this._loadIntent().then(function () {
      var err = pe._validate();
      if (err) { return { error: err }; }
      self._submitted = true;
      return {};
    }, function (error) { return { error: error }; });
  };

  // --- 3-D Secure overlay ------------------------------------------------------------------------------
  function challenge(url, intentId) {
    injectStyles();
    return new Promise(function (resolve) {
      var previouslyFocused = document.activeElement;
      var titleId = nextId('3ds-title');
      var iframe = h('iframe', { src: url, title: '3D Secure authentication', name: 'sbx-3ds-' + intentId,
                                 allow: 'payment' });
      var close = h('button', { type: 'button', 'class': 'sbx-modal-close', 'aria-label': 'Cancel authentication', text: '\u00D7' });
      var modal = h('div', { 'class': 'sbx-modal', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': titleId }, [
        h('div', { 'class': 'sbx-modal-head' }, [h('h2', { 'class': 'sbx-modal-title', id: titleId, text: 'Authenticate your payment' }), close]),
        iframe
      ]);
      var overlay = h('div', { 'class': 'sbx-overlay', 'data-sandbox-3ds': intentId }, [modal]);
      var origin = new URL(url, global.location.href).origin;
      var done = false;

      function finish(outcome) {
        if (done) { return; }
        done = true;
        global.removeEventListener('message', onMessage);
        document.removeEventListener('focusin', onFocusIn, true);
        document.removeEventListener('keydown', onKey, true);
        if (overlay.parentNode) { overlay.parentNode.removeChild(overlay); }
        if (previouslyFocused && previouslyFocused.focus) { try { previouslyFocused.focus(); } catch (e) { /* ignore */ } }
        resolve(outcome);
      }
      function onMessage(e) {
        if (e.origin !== origin || !e.data || e.data.type !== 'stripe-sandbox-3ds-complete' || e.data.intent !== intentId) { return; }
        finish(e.data.outcome);
      }
      function onFocusIn(e) {
        if (!overlay.contains(e.target)) { e.stopPropagation(); close.focus(); }
      }
      function onKey(e) {
        if (e.key === 'Tab') {
          var items = [close, iframe];
          var i = items.indexOf(document.activeElement);
          e.preventDefault();
          items[(i + (e.shiftKey ? items.length - 1 : 1)) % items.length].focus();
        } else if (e.key === 'Escape') {
          e.preventDefault();
          cancel();
        }
      }
      function cancel() {
        // Closing the challenge is a failed authentication, as at Stripe.
        try { iframe.contentWindow.postMessage({ type: 'stripe-sandbox-3ds-cancel', intent: intentId }, origin); } catch (e) { finish('fail'); }
        setTimeout(function () { finish('fail'); }, 3000);
      }
      close.addEventListener('click', cancel);
      global.addEventListener('message', onMessage);
      document.addEventListener('focusin', onFocusIn, true);
      document.addEventListener('keydown', onKey, true);
      document.body.appendChild(overlay);
      iframe.addEventListener('load', function () { try { iframe.focus(); } catch (e) { /* ignore */ } });
      close.focus();
    });
  }

  // --- Stripe ---------------------------------------------------------------------------------------------
  function Stripe(key, options) {
    if (!(this instanceof Stripe)) { return new Stripe(key, options); }
    if (key === undefined || key === null || key === '') {
      throw IntegrationError('Please call Stripe() with your publishable key. You used an empty string.');
    }
    if (typeof key !== 'string') {
      throw IntegrationError('Invalid value for Stripe(): apiKey should be a string. You specified: ' + typeof key + '.');
    }
    if (/^sk_/.test(key) || /^rk_/.test(key)) {
      throw IntegrationError('You should not use your secret key with Stripe.js.\nPlease pass a publishable key instead.');
    }
    this._key = key;
    this._options = options || {};
    this._apiBase = API_BASE;
  }
  Stripe.__sandbox = true;
  Stripe.version = 3;

  Stripe.prototype.elements = function (options) {
    return new Elements(this, options);
  };

  Stripe.prototype._retrieve = function (kind, secret) {
    var id = intentIdFromSecret(secret, kind);
    var path = kind === 'setup' ? '/v1/setup_intents/' : '/v1/payment_intents/';
    return request(this._key, 'GET', path + id, { client_secret: secret }).then(function (r) {
      return r.error ? { error: r.error } : { intent: r.body };
    });
  };

  Stripe.prototype.retrievePaymentIntent = function (clientSecret) {
    if (!intentIdFromSecret(clientSecret, 'payment')) {
      throw IntegrationError('Invalid value for retrievePaymentIntent: clientSecret should be a client secret of the form ${id}_secret_${secret}. You specified: ' + clientSecret + '.');
    }
    return this._retrieve('payment', clientSecret).then(function (r) {
      return r.error ? { error: r.error } : { paymentIntent: r.intent };
    });
  };

  Stripe.prototype.retrieveSetupIntent = function (clientSecret) {
    if (!intentIdFromSecret(clientSecret, 'setup')) {
      throw IntegrationError('Invalid value for retrieveSetupIntent: clientSecret should be a client secret of the form ${id}_secret_${secret}. You specified: ' + clientSecret + '.');
    }
    return this._retrieve('setup', clientSecret).then(function (r) {
      return r.error ? { error: r.error } : { setupIntent: r.intent };
    });
  };

  Stripe.prototype._createPM = function (params) {
    return request(this._key, 'POST', '/v1/payment_methods', params).then(function (r) {
      return r.error ? { error: r.error } : { paymentMethod: r.body };
    });
  };

  Stripe.prototype.createPaymentMethod = function (data) {
    var self = this;
    if (!data || typeof data !== 'object') {
      throw IntegrationError('stripe.createPaymentMethod(): expected an object with `elements` or a `type`.');
    }
    if (data.elements) {
      var elements = data.elements;
      if (!(elements instanceof Elements)) { throw IntegrationError('Invalid value for createPaymentMethod: elements should be an Elements group.'); }
      if (elements._options.clientSecret === undefined && elements._options.paymentMethodCreation !== 'manual') {
        throw IntegrationError('stripe.createPaymentMethod(): the Elements group must be created with paymentMethodCreation: \'manual\' to create a PaymentMethod from the Payment Element.');
      }
      if (!elements._submitted) {
        throw IntegrationError('elements.submit() must be called before stripe.createPaymentMethod(). Call elements.submit() as soon as your customer presses pay, prior to any asynchronous work.');
      }
      var pe = elements.getElement('payment');
      if (!pe || !pe._root) { throw IntegrationError('stripe.createPaymentMethod(): the Payment Element is not mounted.'); }
      return Promise.resolve().then(function () {
        var err = pe._validate();
        if (err) { return { error: err }; }
        return self._createPM(pe._paymentMethodParams(data.params || {}));
      });
    }
    if (!data.type) { throw IntegrationError('Missing value for createPaymentMethod: type should be a string.'); }
    var params = Object.assign({}, data);
    ['card', 'sepa_debit', 'iban'].forEach(function (k) {
      if (params[k] instanceof BaseElement) {
        throw IntegrationError('stripe.createPaymentMethod(): the ' + k + ' Element is not supported by the sandbox; use the Payment Element.');
      }
    });
    return this._createPM(params);
  };

  Stripe.prototype._confirm = function (kind, options, method) {
    var self = this;
    if (!options || typeof options !== 'object') {
      throw IntegrationError('stripe.' + method + '(): expected an object as the first argument.');
    }
    var elements = options.elements;
    if (elements !== undefined && !(elements instanceof Elements)) {
      throw IntegrationError('Invalid value for ' + method + ': elements should be an Elements group. You specified: ' + typeof elements + '.');
    }
    var secret = options.clientSecret || (elements && elements._options.clientSecret);
    if (!elements && !options.clientSecret) {
      throw IntegrationError('stripe.' + method + '(): expected either `elements` or `clientSecret`, but got neither.');
    }
    if (!secret) {
      throw IntegrationError('stripe.' + method + '(): the `clientSecret` argument is required when the Elements group was created without one (deferred intent creation).');
    }
    if (elements && !elements._options.clientSecret && !elements._submitted) {
      throw IntegrationError('elements.submit() must be called before stripe.' + method + '(). Call elements.submit() as soon as your customer presses pay, prior to any asynchronous work.');
    }
    var id = intentIdFromSecret(secret, kind);
    if (!id) {
      throw IntegrationError('Invalid value for ' + method + ': clientSecret should be a ' + (kind === 'setup' ? 'SetupIntent' : 'PaymentIntent') + ' client secret. You specified: ' + secret + '.');
    }
    var redirect = options.redirect === undefined ? 'always' : options.redirect;
    if (redirect !== 'always' && redirect !== 'if_required') {
      throw IntegrationError('Invalid value for ' + method + ': redirect should be one of the following strings: always, if_required. You specified: ' + redirect + '.');
    }
    var confirmParams = Object.assign({}, options.confirmParams || {});
    if (redirect === 'always' && !confirmParams.return_url) {
      throw IntegrationError('stripe.' + method + '(): the `confirmParams.return_url` argument is required unless passing `redirect: \'if_required\'`');
    }
    var pe = elements ? elements.getElement('payment') : null;
    if (elements && (!pe || !pe._root)) {
      throw IntegrationError('stripe.' + method + '(): the Payment Element in the provided elements group is not mounted.');
    }
    var path = (kind === 'setup' ? '/v1/setup_intents/' : '/v1/payment_intents/') + id;

    return Promise.resolve().then(function () {
      if (pe && !confirmParams.payment_method) {
        var err = pe._validate();
        if (err) { return { error: err }; }
      }
      var pmData = confirmParams.payment_method_data;
      delete confirmParams.payment_method_data;
      var pmStep;
      if (confirmParams.payment_method) {
        pmStep = Promise.resolve({ id: confirmParams.payment_method, type: null });
      } else if (pe) {
        pmStep = self._createPM(pe._paymentMethodParams(pmData)).then(function (r) {
          return r.error ? { error: r.error } : { id: r.paymentMethod.id, type: r.paymentMethod.type };
        });
      } else if (pmData) {
        pmStep = self._createPM(pmData).then(function (r) {
          return r.error ? { error: r.error } : { id: r.paymentMethod.id, type: r.paymentMethod.type };
        });
      } else {
        pmStep = Promise.resolve({ id: null, type: null });
      }
      return pmStep.then(function (pm) {
        if (pm.error) { return { error: pm.error }; }
        var body = Object.assign({}, confirmParams, { client_secret: secret, use_stripe_sdk: 'true' });
        if (pm.id) { body.payment_method = pm.id; }
        if (typeof body.payment_method === 'object' && body.payment_method) {
          // payment_method: {card: element} style is not supported; send what we can.
          delete body.payment_method;
        }
        if (MANDATE_TYPES.indexOf(pm.type) >= 0 && !body.mandate_data) {
          body.mandate_data = { customer_acceptance: { type: 'online', online: { infer_from_client: true } } };
        }
        return request(self._key, 'POST', path + '/confirm', body).then(function (r) {
          if (r.error) { return { error: r.error }; }
          return self._afterConfirm(kind, r.body, secret, confirmParams.return_url, redirect);
        });
      });
    });
  };

  Stripe.prototype._authenticate = function (kind, intent, secret) {
    var self = this;
    var na = intent.next_action || {};
    var url = (na.use_stripe_sdk && (na.use_stripe_sdk.stripe_js || na.use_stripe_sdk.url)) ||
              (na.redirect_to_url && na.redirect_to_url.url) ||
              (API_BASE + '/_sandbox/3ds/' + intent.id);
    if (new URL(url, global.location.href).origin !== API_BASE && na.type === 'redirect_to_url') {
      global.location.assign(url);
      return new Promise(function () {});
    }
    return challenge(url, intent.id).then(function () {
      return self._retrieve(kind, secret);
    });
  };

  function intentResult(kind, intent) {
    return kind === 'setup' ? { setupIntent: intent } : { paymentIntent: intent };
  }

  function intentError(kind, intent) {
    var err = Object.assign({}, intent.last_payment_error || intent.last_setup_error || {
      type: 'invalid_request_error', code: kind === 'setup' ? 'setup_intent_authentication_failure' : 'payment_intent_authentication_failure',
      message: 'We are unable to authenticate your payment method. Please choose a different payment method and try again.' });
    err[kind === 'setup' ? 'setup_intent' : 'payment_intent'] = intent;
    return { error: err };
  }

  Stripe.prototype._afterConfirm = function (kind, intent, secret, returnUrl, redirect) {
    var self = this;
    var step = Promise.resolve({ intent: intent });
    if (intent.status === 'requires_action') {
      step = this._authenticate(kind, intent, secret);
    }
    return step.then(function (r) {
      if (r.error) { return { error: r.error }; }
      var current = r.intent;
      if (current.status === 'requires_payment_method' || current.status === 'canceled' ||
          current.status === 'requires_action') {
        return intentError(kind, current);
      }
      if (redirect === 'always' && returnUrl) {
        var q = kind === 'setup'
          ? { setup_intent: current.id, setup_intent_client_secret: secret, redirect_status: redirectStatus(current) }
          : { payment_intent: current.id, payment_intent_client_secret: secret, redirect_status: redirectStatus(current) };
        global.location.assign(appendQuery(returnUrl, q));
        return new Promise(function () {});
      }
      return intentResult(kind, current);
    });
  };

  Stripe.prototype.confirmPayment = function (options) { return this._confirm('payment', options, 'confirmPayment'); };
  Stripe.prototype.confirmSetup = function (options) { return this._confirm('setup', options, 'confirmSetup'); };

  Stripe.prototype.handleNextAction = function (options) {
    var self = this;
    if (!options || !options.clientSecret) {
      throw IntegrationError('stripe.handleNextAction(): the `clientSecret` argument is required.');
    }
    var secret = options.clientSecret;
    var kind = kindOfSecret(secret);
    if (!kind) {
      throw IntegrationError('Invalid value for handleNextAction: clientSecret should be a client secret of the form ${id}_secret_${secret}. You specified: ' + secret + '.');
    }
    return this._retrieve(kind, secret).then(function (r) {
      if (r.error) { return { error: r.error }; }
      var intent = r.intent;
      if (intent.status !== 'requires_action') { return intentResult(kind, intent); }
      return self._authenticate(kind, intent, secret).then(function (r2) {
        if (r2.error) { return { error: r2.error }; }
        var current = r2.intent;
        if (current.status === 'requires_payment_method' || current.status === 'requires_action') {
          return intentError(kind, current);
        }
        return intentResult(kind, current);
      });
    });
  };

  // Older Stripe.js calls kept working for pages that still use them (PaymentMethod ids only).
  Stripe.prototype.confirmCardPayment = function (clientSecret, data) {
    var self = this;
    data = data || {};
    var id = intentIdFromSecret(clientSecret, 'payment');
    if (!id) { throw IntegrationError('Invalid value for confirmCardPayment: clientSecret should be a PaymentIntent client secret.'); }
    var body = { client_secret: clientSecret, use_stripe_sdk: 'true' };
    if (typeof data.payment_method === 'string') { body.payment_method = data.payment_method; }
    if (data.return_url) { body.return_url = data.return_url; }
    return request(this._key, 'POST', '/v1/payment_intents/' + id + '/confirm', body).then(function (r) {
      if (r.error) { return { error: r.error }; }
      return self._afterConfirm('payment', r.body, clientSecret, null, 'if_required');
    });
  };

  Stripe.prototype.paymentRequest = function () {
    var pr = new Emitter();
    pr.canMakePayment = function () { return Promise.resolve(null); };
    pr.show = function () {};
    pr.update = function () {};
    pr.abort = function () {};
    pr.isShowing = function () { return false; };
    return pr;
  };

  global.Stripe = Stripe;
})(window);

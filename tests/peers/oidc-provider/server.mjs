// panva's oidc-provider on 127.0.0.1, as an independent authorization server for
// oauth-loopback's end-to-end tests (tests/_oidc_provider.py starts it; tests/peers/README.md
// documents it).
//
// Contract with whoever starts it:
// - configuration: a JSON object in OIDC_PEER_CONFIG (keys in DEFAULTS below; an unknown key
//   is refused), the port in OIDC_PEER_PORT (default 0: the OS picks one);
// - readiness: exactly one JSON line on stdout once the socket listens,
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT, "pid": ..., "oidc_provider": ...,
//    "node": ..., "config": {...}}; nothing else is ever written to stdout;
// - lifetime: it exits when its stdin closes (so a test process that dies never leaks it),
//   unless OIDC_PEER_KEEP_ALIVE=1; SIGTERM and SIGINT end it too.
//
// Nobody logs in by hand: the interaction routes below log a fixed test account in and grant
// what was asked ("auto"), refuse ("deny"), or show a two-button form ("form").

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { createRequire } from 'node:module';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints its notices with console.info, which is stdout: keep stdout for the
// ready line alone.
console.info = console.error;
console.log = console.error;

const require = createRequire(import.meta.url);
const OIDC_PROVIDER_VERSION = require('oidc-provider/package.json').version;

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

const DEFAULTS = {
  // "auto": log the test account in and grant every requested scope, no page shown;
  // "deny": answer every authorization (and device confirmation) with access_denied;
  // "form": show a page with Approve / Deny buttons (a real browser, or a POST, decides).
  interactions: 'auto',
  // The `sub` of the one test account.
  account: 'test-user',
  // RFC 7591 dynamic registration, open (no initial access token).
  registration: true,
  // RFC 9126: require pushed authorization requests of every client.
  requirePar: false,
  // RFC 9449 §8: answer use_dpop_nonce until the client sends a server-provided nonce.
  dpopRequireNonce: false,
  // "always": a refresh token for every client allowed the refresh_token grant;
  // "offline_access": only when that scope was granted (oidc-provider's default policy);
  // "never".
  refreshTokens: 'always',
  // Rotate the refresh token on every use (RFC 9700 §2.2.2); the old one stops working.
  rotateRefreshToken: true,
  // RFC 8707 resource indicators: any http(s) resource is accepted, with these scopes.
  resourceScopes: 'read write',
  // The access token format for a resource: "opaque" or "jwt" (RFC 9068).
  accessTokenFormat: 'opaque',
  // A resource used when the client names none (null: none, the token is for userinfo).
  defaultResource: null,
  // RFC 8628 device authorization grant.
  deviceFlow: true,
  // Seconds, sent as `interval` in the device authorization response (null: not sent, so
  // clients use RFC 8628's default of 5). When set, a poll sooner than the interval is
  // answered slow_down (RFC 8628 §3.5), and that device code's interval grows by 5 s.
  deviceInterval: null,
  // Lifetimes, in seconds.
  accessTokenTTL: 3600,
  deviceCodeTTL: 600,
  refreshTokenTTL: 14 * 24 * 3600,
  // Pre-registered clients (oidc-provider client metadata, snake_case), e.g.
  // [{"client_id": "cli", "application_type": "native", "token_endpoint_auth_method": "none",
  //   "redirect_uris": ["http://127.0.0.1/callback"], "grant_types": [...]}].
  clients: [],
};

const KNOWN_INTERACTIONS = new Set(['auto', 'deny', 'form']);
const KNOWN_REFRESH = new Set(['always', 'offline_access', 'never']);

function fail(message) {
  process.stderr.write(`oidc-provider peer: ${message}\n`);
  process.exit(2);
}

function loadConfig() {
  let given = {};
  const raw = process.env.OIDC_PEER_CONFIG;
  if (raw) {
    try {
      given = JSON.parse(raw);
    } catch (err) {
      fail(`OIDC_PEER_CONFIG is not JSON (${err.message}); pass an object such as {"requirePar": true}.`);
    }
    if (given === null || typeof given !== 'object' || Array.isArray(given)) {
      fail('OIDC_PEER_CONFIG must be a JSON object such as {"requirePar": true}.');
    }
  }
  const unknown = Object.keys(given).filter((key) => !(key in DEFAULTS));
  if (unknown.length) {
    fail(`unknown OIDC_PEER_CONFIG key(s) ${unknown.join(', ')}; the keys are ${Object.keys(DEFAULTS).join(', ')}.`);
  }
  const config = { ...DEFAULTS, ...given };
  if (!KNOWN_INTERACTIONS.has(config.interactions)) {
    fail(`interactions must be one of ${[...KNOWN_INTERACTIONS].join(', ')}, not ${JSON.stringify(config.interactions)}.`);
  }
  if (!KNOWN_REFRESH.has(config.refreshTokens)) {
    fail(`refreshTokens must be one of ${[...KNOWN_REFRESH].join(', ')}, not ${JSON.stringify(config.refreshTokens)}.`);
  }
  if (!['opaque', 'jwt'].includes(config.accessTokenFormat)) {
    fail(`accessTokenFormat must be "opaque" or "jwt", not ${JSON.stringify(config.accessTokenFormat)}.`);
  }
  for (const key of ['accessTokenTTL', 'deviceCodeTTL', 'refreshTokenTTL']) {
    if (!Number.isInteger(config[key]) || config[key] <= 0) {
      fail(`${key} must be a positive whole number of seconds, not ${JSON.stringify(config[key])}.`);
    }
  }
  if (config.deviceInterval !== null && (!Number.isInteger(config.deviceInterval) || config.deviceInterval <= 0)) {
    fail(`deviceInterval must be null or a positive whole number of seconds, not ${JSON.stringify(config.deviceInterval)}.`);
  }
  return config;
}

function loadPort() {
  const raw = process.env.OIDC_PEER_PORT ?? '0';
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65535) {
    fail(`OIDC_PEER_PORT must be a port number (0 lets the OS pick one), not ${JSON.stringify(raw)}.`);
  }
  return port;
}

// Fresh keys per run: nothing signed by one run verifies against another.
function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return [
    { ...rsa.export({ format: 'jwk' }), kid: `rsa-${crypto.randomUUID()}`, use: 'sig', alg: 'RS256' },
    { ...ec.export({ format: 'jwk' }), kid: `ec-${crypto.randomUUID()}`, use: 'sig', alg: 'ES256' },
  ];
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html lang=en><head><meta charset=utf-8><title>${escapeHtml(title)}</title></head>`
    + `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

// A page whose one form a browser submits by itself (as oidc-provider's form_post pages do).
function autoSubmitPage(title, form) {
  return `<!doctype html><html lang=en><head><meta charset=utf-8><title>${escapeHtml(title)}</title>`
    + '<script>document.addEventListener("DOMContentLoaded", function () { document.forms[0].submit() });</script>'
    + `</head><body>${form}<noscript><button type="submit" form="${form.match(/id="([^"]+)"/)[1]}">Continue</button></noscript></body></html>`;
}

function buildProvider(issuer, config) {
  const DENIED = 'The test account refused (oidc-provider peer started with interactions=deny).';

  const configuration = {
    clients: config.clients,
    jwks: { keys: signingKeys() },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Client metadata `scope` (RFC 7591 §2) may only name these, so the resource scopes are
    // listed too (they are granted per resource, RFC 8707).
    scopes: [...new Set(['openid', 'offline_access', 'email', 'profile', ...config.resourceScopes.split(' ').filter(Boolean)])],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    async findAccount(_ctx, sub) {
      if (sub !== config.account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, email: `${sub}@peer.test`, email_verified: true, name: 'Test User' };
        },
      };
    },
    // RFC 7636: PKCE for every client (oidc-provider offers S256 only).
    pkce: { required: () => true },
    issueRefreshToken(_ctx, client, source) {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      if (config.refreshTokens === 'always') return true;
      if (config.refreshTokens === 'never') return false;
      return source.scopes.has('offline_access');
    },
    rotateRefreshToken: () => config.rotateRefreshToken,
    // A CLI's tokens outlive the browser session used to log in.
    expiresWithSession: () => false,
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTTL,
      AuthorizationCode: () => 60,
      ClientCredentials: () => config.accessTokenTTL,
      DeviceCode: () => config.deviceCodeTTL,
      Grant: () => config.refreshTokenTTL,
      IdToken: () => 3600,
      Interaction: () => 600,
      RefreshToken: () => config.refreshTokenTTL,
      Session: () => config.refreshTokenTTL,
      BackchannelAuthenticationRequest: () => 600,
      PreAuthorizedCode: () => 600,
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    renderError(ctx, out) {
      // A plain page (the default one loads web fonts), marked for headless clients.
      ctx.type = 'html';
      ctx.set('X-Peer-Error', String(out.error ?? 'server_error'));
      const rows = Object.entries(out)
        .map(([key, value]) => `<p><b>${escapeHtml(key)}</b>: ${escapeHtml(value)}</p>`).join('');
      ctx.body = page('oidc-provider peer: error', rows);
    },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: config.registration, initialAccessToken: false },
      pushedAuthorizationRequests: {
        enabled: true,
        requirePushedAuthorizationRequests: config.requirePar,
      },
      dPoP: {
        enabled: true,
        // With a secret, the server issues DPoP-Nonce values (RFC 9449 §8).
        nonceSecret: crypto.randomBytes(32),
        requireNonce: () => config.dpopRequireNonce,
      },
      revocation: { enabled: true },
      introspection: { enabled: true },
      rpInitiatedLogout: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? config.defaultResource ?? undefined,
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, resourceIndicator) {
          const url = URL.parse(resourceIndicator);
          if (!url || !['http:', 'https:'].includes(url.protocol) || url.hash) {
            throw new errors.InvalidTarget('the resource indicator must be an absolute http(s) URI without a fragment (RFC 8707 §2)');
          }
          return {
            scope: config.resourceScopes,
            audience: resourceIndicator,
            accessTokenTTL: config.accessTokenTTL,
            accessTokenFormat: config.accessTokenFormat,
            ...(config.accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
          };
        },
      },
      deviceFlow: {
        enabled: config.deviceFlow,
        async userCodeInputSource(ctx, form, _out, err) {
          const why = err ? `<p id="error">${escapeHtml(err.message ?? 'error')}</p>` : '';
          ctx.body = page('Enter the code shown on your device', `${why}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`);
        },
        async userCodeConfirmSource(ctx, form, client, _deviceInfo, userCode) {
          if (config.interactions === 'auto') {
            ctx.body = autoSubmitPage('Confirm the device', form);
          } else if (config.interactions === 'deny') {
            // The same form, submitted as the Abort button would (access_denied).
            ctx.body = autoSubmitPage('Confirm the device', form.replace('</form>', '<input type="hidden" name="abort" value="yes"/></form>'));
          } else {
            ctx.body = page('Confirm the device', `<p>${escapeHtml(client.clientName ?? client.clientId)} shows <code>${escapeHtml(userCode)}</code>?</p>`
              + `${form}<button type="submit" form="op.deviceConfirmForm" id="approve">Continue</button>`
              + '<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes" id="deny">Abort</button>');
          }
        },
        async successSource(ctx) {
          ctx.set('X-Peer-Device', 'approved');
          ctx.body = page('Device signed in', '<p>You can close this page.</p>');
        },
      },
    },
  };

  const provider = new Provider(issuer, configuration);
  // The issuer is plain http on loopback; nothing sits in front of it.
  provider.proxy = false;

  // RFC 8628 §3.2 `interval` and §3.5 slow_down, which oidc-provider leaves to the deployment.
  const polls = new Map(); // device_code -> { last, interval }
  provider.use(async (ctx, next) => {
    await next();
    if (config.deviceInterval === null || !ctx.oidc) return;
    if (ctx.oidc.route === 'device_authorization' && ctx.status === 200 && ctx.body) {
      ctx.body.interval = config.deviceInterval;
      return;
    }
    if (ctx.oidc.route !== 'token' || ctx.oidc.params?.grant_type !== DEVICE_CODE_GRANT) return;
    const code = ctx.oidc.params.device_code;
    if (typeof code !== 'string') return;
    const now = Date.now();
    const seen = polls.get(code);
    // Only a pending answer is replaced: nothing was consumed, so nothing is lost.
    if (ctx.status === 400 && ctx.body?.error === 'authorization_pending') {
      if (seen && now - seen.last < seen.interval * 1000) {
        seen.interval += 5;
        ctx.body = {
          error: 'slow_down',
          error_description: `polled sooner than the interval; wait ${seen.interval} seconds between requests (RFC 8628 section 3.5)`,
        };
        seen.last = now;
        return;
      }
      polls.set(code, { last: now, interval: seen?.interval ?? config.deviceInterval });
    } else {
      polls.delete(code);
    }
  });

  // The interaction routes: login and consent without a person.
  provider.use(async (ctx, next) => {
    const match = /^\/interaction\/([A-Za-z0-9_-]+)$/.exec(ctx.path);
    if (!match) return next();
    ctx.set('Cache-Control', 'no-store');
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.set('X-Peer-Error', 'interaction_not_found');
      ctx.body = page('This sign-in is no longer valid', `<p>${escapeHtml(err.message)}. Start the login again.</p>`);
      return;
    }
    if (details.uid !== match[1]) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.set('X-Peer-Error', 'interaction_mismatch');
      ctx.body = page('This sign-in is no longer valid', '<p>Start the login again.</p>');
      return;
    }
    let approve;
    if (config.interactions === 'form') {
      if (ctx.method === 'GET') {
        ctx.type = 'html';
        ctx.set('X-Peer-Interaction', details.prompt.name);
        ctx.body = page(details.prompt.name === 'login' ? 'Sign in as the test account?' : 'Grant access?',
          `<p>Client <code>${escapeHtml(details.params.client_id)}</code> asks for <code>${escapeHtml(details.params.scope ?? '')}</code>.</p>`
          + `<form method="post" action="/interaction/${details.uid}">`
          + '<button type="submit" name="decision" value="approve" id="approve">Approve</button>'
          + '<button type="submit" name="decision" value="deny" id="deny">Deny</button></form>');
        return;
      }
      if (ctx.method !== 'POST') {
        ctx.status = 405;
        ctx.set('Allow', 'GET, POST');
        return;
      }
      const chunks = [];
      let size = 0;
      for await (const chunk of ctx.req) {
        size += chunk.length;
        if (size > 4096) ctx.throw(413, 'form too large');
        chunks.push(chunk);
      }
      const decision = new URLSearchParams(Buffer.concat(chunks).toString('utf8')).getAll('decision');
      if (decision.length !== 1 || !['approve', 'deny'].includes(decision[0])) {
        ctx.status = 400;
        ctx.body = page('Bad form', '<p>Choose Approve or Deny.</p>');
        return;
      }
      approve = decision[0] === 'approve';
    } else {
      approve = config.interactions === 'auto';
    }

    let result;
    if (!approve) {
      result = { error: 'access_denied', error_description: DENIED };
    } else if (details.prompt.name === 'login') {
      result = { login: { accountId: config.account } };
    } else if (details.prompt.name === 'consent') {
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      if (missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      result = { error: 'server_error', error_description: `the peer has no handler for the ${details.prompt.name} prompt` };
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    // RFC 9110 §15.4.4: 303, so a form POST is followed by a GET.
    ctx.status = 303;
    ctx.redirect(returnTo);
  });

  return provider;
}

const config = loadConfig();
const port = loadPort();

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = http.createServer((req, res) => handler(req, res));
server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}. Pick another OIDC_PEER_PORT, or 0.`));
server.listen(port, '127.0.0.1', () => {
  const bound = server.address().port;
  const issuer = `http://127.0.0.1:${bound}`;
  let provider;
  try {
    provider = buildProvider(issuer, config);
  } catch (err) {
    fail(`oidc-provider refused the configuration: ${err.message}`);
  }
  handler = provider.callback();
  process.stdout.write(`${JSON.stringify({
    issuer,
    port: bound,
    pid: process.pid,
    oidc_provider: OIDC_PROVIDER_VERSION,
    node: process.version,
    config,
  })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
if (process.env.OIDC_PEER_KEEP_ALIVE !== '1') {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
}

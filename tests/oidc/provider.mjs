// Loopback OpenID Connect provider for the Autonomy OS test suite.
//
// Usage: node provider.mjs CONFIG.json   (or OIDC_CONFIG=CONFIG.json node provider.mjs)
// Prints exactly one line to stdout once listening: "READY <issuer-url>".
// Everything else (warnings, errors) goes to stderr. Set OIDC_VERBOSE=1 for more logging.
// Test use only: plain http, in-memory storage, ephemeral signing key.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

const VERBOSE = Boolean(process.env.OIDC_VERBOSE);

// oidc-provider logs its dev notices/warnings through console.info/console.warn;
// keep stdout reserved for the single READY line and keep stderr quiet unless asked.
const toStderr = (...args) => process.stderr.write(`${args.map(String).join(' ')}\n`);
console.log = toStderr;
console.info = (...args) => {
  if (VERBOSE) toStderr(...args);
};
console.warn = (...args) => {
  if (VERBOSE || !String(args[0]).startsWith('oidc-provider')) toStderr(...args);
};

// Imported after the console redirection above so that import-time notices
// (e.g. oidc-provider's "Unsupported runtime" advisory on Node 20) stay off stdout.
const { default: Provider } = await import('oidc-provider');

function fail(message) {
  process.stderr.write(`oidc test provider: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- config
const configPath = process.argv[2] || process.env.OIDC_CONFIG;
if (!configPath) fail('usage: node provider.mjs CONFIG.json (or set OIDC_CONFIG)');

let config;
try {
  config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
} catch (err) {
  fail(`cannot read config ${configPath}: ${err.message}`);
}

const host = config.issuer_host || '127.0.0.1';
const port = Number(config.port || 0);
const users = new Map((config.users || []).map((u) => [String(u.sub), u]));

const clients = (config.clients || []).map((c) => {
  const grantTypes = c.grant_types || ['authorization_code'];
  const responseTypes = c.response_types || (grantTypes.includes('authorization_code') ? ['code'] : []);
  const client = {
    client_id: c.client_id,
    client_secret: c.client_secret,
    client_name: c.client_name || c.client_id,
    grant_types: grantTypes,
    response_types: responseTypes,
    redirect_uris: c.redirect_uris || [],
    post_logout_redirect_uris: c.post_logout_redirect_uris || [],
    // Both client_secret_basic and client_secret_post are accepted by oidc-provider
    // for a client registered with either of them.
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  };
  if (c.scope) client.scope = c.scope;
  return client;
});

// ---------------------------------------------------------------- helpers
const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (ch) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[ch]));

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:22rem;margin:3rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}.error{color:#b00020}</style>
</head>
<body>
${body}
</body>
</html>`;
}

function loginPage({ uid, clientName, login = '', error }) {
  return page('Sign in', `<h1>Sign in</h1>
<p>to continue to ${esc(clientName)}</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="login">Username</label>
  <input id="login" name="login" type="text" value="${esc(login)}" required autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Cancel</a></p>`);
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function passwordMatches(user, password) {
  const a = Buffer.from(String(user.password ?? ''));
  const b = Buffer.from(String(password ?? ''));
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

const GRANTED_SCOPE = 'openid email profile groups';

// Auto-consent: every configured client gets the standard scopes granted.
async function ensureGrant(provider, { grantId, clientId, accountId }) {
  let grant = grantId ? await provider.Grant.find(grantId) : undefined;
  if (!grant) grant = new provider.Grant({ clientId, accountId });
  grant.addOIDCScope(GRANTED_SCOPE);
  await grant.save();
  return grant;
}

// ---------------------------------------------------------------- provider
function buildProvider(issuer) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: crypto.randomBytes(8).toString('hex'),
    alg: 'RS256',
    use: 'sig',
  };

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [jwk] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('hex')],
      // secure is derived from the request (plain http here => not secure).
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Put scope claims into the id_token too (not only userinfo).
    conformIdTokenClaims: false,
    async findAccount(ctx, sub) {
      const user = users.get(String(sub));
      if (!user) return undefined;
      return {
        accountId: String(user.sub),
        async claims() {
          const given = user.given_name || '';
          const family = user.family_name || '';
          return {
            sub: String(user.sub),
            email: user.email,
            email_verified: user.email_verified ?? true,
            given_name: given,
            family_name: family,
            name: user.name || `${given} ${family}`.trim() || String(user.sub),
            preferred_username: user.preferred_username || String(user.sub),
            groups: Array.isArray(user.groups) ? user.groups : [],
          };
        },
      };
    },
    async loadExistingGrant(ctx) {
      // Skip the consent prompt: all configured clients are first party.
      if (!ctx.oidc.session?.accountId) return undefined;
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      return ensureGrant(ctx.oidc.provider, {
        grantId,
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
    },
    interactions: {
      url(ctx, interaction) {
        return `/interaction/${interaction.uid}`;
      },
    },
    // PKCE is accepted (S256) but only required for public clients.
    pkce: {
      required(ctx, client) {
        return client.clientAuthMethod === 'none';
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // Any confidential client (e.g. the portal) may introspect any token.
        async allowedPolicy(ctx, client) {
          return client.clientAuthMethod !== 'none';
        },
      },
      revocation: {
        enabled: true,
        // Any confidential client may revoke any token (tests revoke agent tokens).
        async allowedPolicy(ctx, client) {
          return client.clientAuthMethod !== 'none';
        },
      },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // No confirmation screen: submit the logout form automatically.
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = page('Sign out', `${form}
<h1>Signing out</h1>
<button type="submit" form="op.logoutForm" name="logout" value="yes" id="op-logout">Sign out</button>
<script>document.getElementById('op-logout').click();</script>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<h1>Signed out</h1><p>You have been signed out.</p>');
        },
      },
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 600,
      ClientCredentials: 3600,
      Grant: 86400,
      IdToken: 3600,
      Interaction: 3600,
      Session: 86400,
    },
    clientBasedCORS() {
      return true;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Error</h1>${Object.entries(out)
        .map(([k, v]) => `<p><strong>${esc(k)}</strong>: <span class="${esc(k)}">${esc(v)}</span></p>`)
        .join('')}`);
    },
  });

  provider.on('server_error', (ctx, err) => toStderr('oidc server_error:', err?.stack || err));
  if (VERBOSE) {
    for (const ev of ['authorization.error', 'grant.error', 'introspection.error', 'revocation.error', 'userinfo.error', 'end_session.error']) {
      provider.on(ev, (ctx, err) => toStderr(`oidc ${ev}:`, err?.message, err?.error_description || ''));
    }
  }
  return provider;
}

// ---------------------------------------------------------------- interactions
async function handleInteraction(provider, req, res, pathname) {
  const m = /^\/interaction\/([^/]+)(?:\/(login|abort))?\/?$/.exec(pathname);
  if (!m) return send(res, 404, page('Not found', '<h1>Not found</h1>'));
  const [, uid, action] = m;

  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, page('Error', `<h1>Error</h1><p class="error">${esc(err.error_description || err.message)}</p>`));
  }
  if (details.uid !== uid) {
    return send(res, 400, page('Error', '<h1>Error</h1><p class="error">interaction mismatch</p>'));
  }
  const { prompt, params, session } = details;
  const client = await provider.Client.find(params.client_id);
  const clientName = client?.clientName || params.client_id;

  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }

  if (prompt.name === 'consent') {
    // Normally unreachable (loadExistingGrant grants up front), but be safe.
    const grant = await ensureGrant(provider, {
      grantId: details.grantId, clientId: params.client_id, accountId: session.accountId,
    });
    return provider.interactionFinished(req, res, { consent: { grantId: grant.jti } }, { mergeWithLastSubmission: true });
  }

  if (prompt.name !== 'login') {
    return send(res, 501, page('Error', `<h1>Unsupported prompt ${esc(prompt.name)}</h1>`));
  }

  if (action === 'login' && req.method === 'POST') {
    const form = await readForm(req);
    const login = form.get('login') || '';
    const user = users.get(login);
    if (!user || !passwordMatches(user, form.get('password'))) {
      return send(res, 200, loginPage({
        uid, clientName, login, error: 'Invalid username or password.',
      }));
    }
    return provider.interactionFinished(req, res, {
      login: { accountId: String(user.sub) },
    }, { mergeWithLastSubmission: false });
  }

  return send(res, 200, loginPage({ uid, clientName, login: params.login_hint || '' }));
}

// ---------------------------------------------------------------- server
let provider;
let providerCallback;

const server = http.createServer(async (req, res) => {
  try {
    const { pathname } = new URL(req.url, 'http://placeholder');
    if (pathname.startsWith('/interaction/')) {
      await handleInteraction(provider, req, res, pathname);
    } else {
      await providerCallback(req, res);
    }
  } catch (err) {
    toStderr('oidc test provider error:', err?.stack || err);
    if (!res.headersSent) send(res, 500, page('Error', '<h1>Internal error</h1>'));
    else res.end();
  }
});

server.on('error', (err) => fail(`server error: ${err.message}`));

server.listen(port, host, () => {
  const address = server.address();
  const issuerHost = host.includes(':') ? `[${host}]` : host;
  const issuer = `http://${issuerHost}:${address.port}`;
  try {
    provider = buildProvider(issuer);
  } catch (err) {
    fail(`cannot configure provider: ${err?.stack || err}`);
  }
  providerCallback = provider.callback();
  process.stdout.write(`READY ${issuer}\n`);
});

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

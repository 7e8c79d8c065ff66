// A real OAuth 2.1 authorization server for the client-side login tests:
// oidc-provider on a free loopback port with dynamic client registration, the
// authorization code grant with PKCE, refresh tokens, revocation, RFC 9207
// `iss` in authorization responses and resource indicators (JWT access tokens
// whose audience is the resource asked for).
//
// The login and consent pages are replaced by one automatic step (the user
// "ada" logs in and grants what was asked), so that a test's user agent only
// has to follow redirects with its cookies.
//
// Usage: node login_server.mjs '<json config>'
//   {"resourcePattern": "^http://127\\.0\\.0\\.1:\\d+/mcp$", "scopes": ["mcp:tools"],
//    "accessTokenTTL": 300}
// Prints one JSON line {"issuer": ...} once it listens, and exits when its
// standard input closes.

import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(process.argv[2]);
const resourcePattern = new RegExp(config.resourcePattern);

function signingKey(type, options, kid, alg) {
  const jwk = generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  return { ...jwk, kid, alg, use: 'sig' };
}

const keys = [
  signingKey('rsa', { modulusLength: 2048 }, 'login-rsa-1', 'RS256'),
  signingKey('ec', { namedCurve: 'P-256' }, 'login-ec-1', 'ES256'),
];

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks: { keys },
    scopes: ['openid', 'offline_access', ...config.scopes],
    cookies: { keys: ['a-cookie-key-for-tests-only'] },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (!resourcePattern.test(indicator)) throw new errors.InvalidTarget();
          return {
            scope: config.scopes.join(' '),
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.accessTokenTTL || 300,
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  });
  const callback = provider.callback();

  async function interaction(req, res) {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params } = details;
    if (prompt.name === 'login') {
      await provider.interactionFinished(req, res, { login: { accountId: 'ada' } },
        { mergeWithLastSubmission: false });
      return;
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: 'ada', clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } },
      { mergeWithLastSubmission: true });
  }

  server.on('request', (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((error) => {
        res.statusCode = 500;
        res.end(String(error));
      });
      return;
    }
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));

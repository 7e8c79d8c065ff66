// A real OAuth 2.1 authorization server for the resource-server tests: oidc-provider
// (a certified OpenID provider) on a free loopback port, with one confidential
// client allowed the client_credentials grant and resource indicators (RFC 8707),
// so that it issues JWT access tokens whose audience is the resource asked for.
//
// Usage: node authorization_server.mjs '<json config>'
//   {"resourcePattern": "^http://127\\.0\\.0\\.1:\\d+/mcp$", "clientId": "...",
//    "clientSecret": "...", "scopes": ["mcp:tools", ...], "organization": "acme"}
// Resource indicators matching the pattern are accepted (the resource servers
// of a test pick their ports after this server started).
// Prints one JSON line {"issuer": ..., "token_endpoint": ..., "jwks_uri": ...}
// once it listens, and exits when its standard input closes (so a test that dies
// never leaves it behind).

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
  // oidc-provider signs ID tokens with RS256 by default, so it wants an RSA key too
  signingKey('rsa', { modulusLength: 2048 }, 'as-rsa-1', 'RS256'),
  signingKey('ec', { namedCurve: 'P-256' }, 'as-ec-1', 'ES256'),
];

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.clientId,
      client_secret: config.clientSecret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: config.scopes.join(' '),
    }],
    jwks: { keys },
    scopes: ['openid', ...config.scopes],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // a client must name the resource it wants a token for (RFC 8707)
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (!resourcePattern.test(indicator)) throw new errors.InvalidTarget();
          return {
            scope: config.scopes.join(' '),
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    extraTokenClaims: () => ({ org: config.organization }),
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({
    issuer,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
  })}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));

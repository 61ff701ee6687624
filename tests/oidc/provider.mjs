// Local OpenID Provider for the end-to-end tests (see README.md).
// Configuration only: the protocol work is done by the `oidc-provider` package.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info; keep stdout for the
// single "ready" line the test waits for and send everything else to stderr.
console.info = console.error;

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(need('OIDC_PORT'));
const issuer = process.env.OIDC_ISSUER || `http://127.0.0.1:${port}`;
const clientId = need('OIDC_CLIENT_ID');
const scopes = 'openid email profile';

// Fresh RS256 signing key for every run: nothing secret is committed.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

// Any login name is an account; its id is the name as typed.
function accountClaims(login) {
  const email = login.includes('@') ? login : `${login}@example.com`;
  const local = email.split('@')[0];
  return {
    sub: login,
    email,
    email_verified: true,
    given_name: local.charAt(0).toUpperCase() + local.slice(1),
    family_name: 'Tester',
  };
}

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: need('OIDC_CLIENT_SECRET'),
    redirect_uris: [need('OIDC_REDIRECT_URI')],
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
  }],
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: scopes.split(' '),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['given_name', 'family_name'],
  },
  // Put the scope claims into the ID token itself (the relying party only reads it).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  jwks: { keys: [signingKey] },
  ttl: { AuthorizationCode: 60, AccessToken: 600, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  cookies: {
    // Cookies ignore the port: prefixed names keep clear of the relying party's own
    // cookies on the same 127.0.0.1 host.
    names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
    keys: [randomBytes(32).toString('base64url')],
  },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return accountClaims(id); } };
  },
  // Auto-consent: the test client always gets openid email profile, no consent page.
  async loadExistingGrant(ctx) {
    const { client, session, account, provider: op } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    const existing = grantId && await op.Grant.find(grantId);
    if (existing?.accountId === account.accountId) return existing;
    const grant = new op.Grant({ clientId: client.clientId, accountId: account.accountId });
    grant.addOIDCScope(scopes);
    await grant.save();
    return grant;
  },
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'introspection.error', 'userinfo.error', 'end_session.error']) {
  provider.on(event, (ctx, err) => {
    const detail = [err.error_description, err.error_detail].filter(Boolean).join('; ');
    console.error(`oidc-provider ${event}: ${err.name}: ${err.message}${detail ? ` (${detail})` : ''}`);
  });
}

const server = createServer(provider.callback());
server.on('error', (err) => {
  console.error(`provider.mjs: ${err.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`OIDC provider ready at ${issuer}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));

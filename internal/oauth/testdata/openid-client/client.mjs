// Drives a Jeton server with openid-client (https://github.com/panva/openid-client),
// the most used OpenID Connect relying-party library for JavaScript, as an
// application would. Run by internal/oauth's TestOpenIDClientForNode, which
// plays the user and checks each step: this script writes one JSON line per
// step to stdout and then waits for the test's line on stdin (the callback
// URL after "authorize", "ok" after the others), so that the test sees
// the state each step left before the next step changes it. Only "device"
// does not wait: the test approves the code while the script polls.
//
// Environment: JETON_ISSUER, JETON_CLIENT_ID, JETON_CLIENT_AUTH (as the
// client is registered: client_secret_basic or client_secret_post with
// JETON_CLIENT_SECRET, private_key_jwt with JETON_CLIENT_JWK, a private
// P-256 JWK with its kid, or none for a public client, which skips the
// client credentials grant), JETON_REDIRECT_URI,
// JETON_POST_LOGOUT_REDIRECT_URI, JETON_RESOURCE (the API's identifier),
// and optionally JETON_JWT_CLIENTS: a JSON array of
// {"id", "secret", "alg"}, clients of JWT access tokens, whose tokens the
// script checks as a resource server would.
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';
import * as readline from 'node:readline';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const ask = async (obj) => {
  say(obj);
  const { value, done } = await lines.next();
  if (done) throw new Error('stdin closed');
  return value;
};
const step = async (obj) => {
  const answer = await ask(obj);
  if (answer !== 'ok') throw new Error(`the test answered ${answer} after ${obj.step}`);
};

const issuer = new URL(env('JETON_ISSUER'));
const redirectURI = env('JETON_REDIRECT_URI');
const resource = env('JETON_RESOURCE');

// Discovery: openid-client checks that the metadata's issuer is the URL it
// was given. The test server speaks plain http on 127.0.0.1.
const clientAuth = async (method) => {
  switch (method) {
    case 'client_secret_basic':
      return client.ClientSecretBasic(env('JETON_CLIENT_SECRET'));
    case 'client_secret_post':
      return client.ClientSecretPost(env('JETON_CLIENT_SECRET'));
    case 'none':
      return client.None();
    case 'private_key_jwt': {
      const jwk = JSON.parse(env('JETON_CLIENT_JWK'));
      const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      return client.PrivateKeyJwt({ key, kid: jwk.kid });
    }
  }
  throw new Error(`unknown JETON_CLIENT_AUTH ${method}`);
};
const config = await client.discovery(issuer, env('JETON_CLIENT_ID'), undefined, await clientAuth(env('JETON_CLIENT_AUTH')), {
  execute: [client.allowInsecureRequests],
});

// Client credentials for the API (RFC 8707 resource).
if (env('JETON_CLIENT_AUTH') !== 'none') {
  const cc = await client.clientCredentialsGrant(config, { scope: 'repos:read', resource });
  await step({ step: 'client_credentials', access_token: cc.access_token, token_type: cc.token_type, scope: cc.scope });
}

// Authorization code with PKCE, state and nonce. The library checks the
// iss parameter of the redirect (RFC 9207), the state, the code exchange,
// and the ID token's iss, aud, exp, iat and nonce.
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authURL = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectURI,
  scope: 'openid email profile repos:read',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
});
const callback = await ask({ step: 'authorize', url: authURL.href });
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
await step({ step: 'authorization_code', sub: claims.sub, email: claims.email, userinfo_email: info.email, access_token: tokens.access_token, refresh_token: tokens.refresh_token });

// Refresh: rotation on every use; the ID token of a refresh must name the
// same subject, which the library checks.
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
await step({ step: 'refresh', access_token: refreshed.access_token, refresh_token: refreshed.refresh_token });

// Introspection (RFC 7662) of the client's own access token, with the
// client's credentials; a public client has none to present.
if (env('JETON_CLIENT_AUTH') !== 'none') {
  const intro = await client.tokenIntrospection(config, refreshed.access_token);
  await step({ step: 'introspect', active: String(intro.active), client_id: intro.client_id, sub: intro.sub });
}

// Revocation (RFC 7009) of the newest refresh token, with the client's credentials.
await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
await step({ step: 'revoke', refresh_token: refreshed.refresh_token });

// The device flow (RFC 8628): the user approves on /device meanwhile.
const device = await client.initiateDeviceAuthorization(config, { scope: 'repos:read' });
say({ step: 'device', user_code: device.user_code, verification_uri_complete: device.verification_uri_complete });
const dt = await client.pollDeviceAuthorizationGrant(config, device);
await step({ step: 'device_token', access_token: dt.access_token });

// RP-initiated logout: the library builds the URL from the discovered
// end_session_endpoint; the test follows it as the user's browser and checks
// that Jeton sends it back with the state and has ended the session.
const logoutState = client.randomState();
const logoutURL = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: env('JETON_POST_LOGOUT_REDIRECT_URI'),
  state: logoutState,
});
await step({ step: 'logout', url: logoutURL.href, state: logoutState });

// A resource server's check of JWT access tokens (RFC 9068), with
// oauth4webapi: signature against the JWKS it finds through discovery, typ
// at+jwt, iss, aud, exp, and the presence and types of sub, client_id,
// iat and jti.
for (const jc of JSON.parse(process.env.JETON_JWT_CLIENTS || 'null') ?? []) {
  const jconfig = await client.discovery(issuer, jc.id, undefined, client.ClientSecretBasic(jc.secret), {
    execute: [client.allowInsecureRequests],
  });
  const t = await client.clientCredentialsGrant(jconfig, { scope: 'repos:read', resource });
  const request = new Request('http://api.example/repos', { headers: { authorization: `Bearer ${t.access_token}` } });
  const claims = await oauth.validateJwtAccessToken(jconfig.serverMetadata(), request, resource, {
    [oauth.allowInsecureRequests]: true,
  });
  await step({ step: 'jwt_access_token', alg: jc.alg, sub: claims.sub, client_id: claims.client_id, aud: [].concat(claims.aud).join(' '), scope: claims.scope });
}
say({ step: 'done' });
process.exit(0);

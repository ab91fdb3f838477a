//! Who may call the function.
//!
//! On AWS the Function URL uses `authType: AWS_IAM` (serverless.yml): AWS checks the caller's
//! SigV4 signature before the function runs, and the event carries `requestContext.authorizer.iam`.
//! Optionally, callers present a bearer API key (`Authorization: Bearer <key>`); the function keeps
//! only SHA-256 hashes of the keys (hex, comma-separated), from the `API_KEY_SHA256S` environment
//! variable or from the SSM parameter named by `API_KEY_SHA256S_SSM_PARAMETER`, and compares them in
//! constant time. On Lambda a request that has neither passed IAM nor an API Gateway authorizer and
//! finds no keys configured is refused: the function never serves anonymous callers there.
//! Locally (`npm start`) auth is off unless keys are configured.

import { createHash, timingSafeEqual } from "node:crypto";

import { HttpError } from "./errors.js";

const HASH = /^[0-9a-f]{64}$/;

/** Parses `API_KEY_SHA256S`-style text: hex SHA-256 hashes separated by commas or whitespace. */
export function parseKeyHashes(text, source) {
  const hashes = String(text)
    .split(/[\s,]+/)
    .map((item) => item.trim().toLowerCase())
    .filter(Boolean);
  for (const hash of hashes) {
    if (!HASH.test(hash)) {
      throw new Error(`${source}: ${JSON.stringify(hash.slice(0, 80))} is not a SHA-256 hash (64 hex digits); store sha256(key), e.g. \`printf %s "$KEY" | sha256sum\``);
    }
  }
  return hashes.map((hash) => Buffer.from(hash, "hex"));
}

/** The SHA-256 of a key, as 32 bytes. */
export function keyHash(key) {
  return createHash("sha256").update(key, "utf8").digest();
}

/**
 * Reads the key hashes from the environment or SSM; null when none are configured.
 * `importSsm` loads `@aws-sdk/client-ssm` (part of the Node.js runtime on Lambda; not a dependency
 * of this package).
 */
export async function loadKeyHashes(env = process.env, { importSsm = () => import("@aws-sdk/client-ssm") } = {}) {
  if (env.API_KEY_SHA256S) return parseKeyHashes(env.API_KEY_SHA256S, "API_KEY_SHA256S");
  const parameter = env.API_KEY_SHA256S_SSM_PARAMETER;
  if (!parameter) return null;
  let ssm;
  try {
    ssm = await importSsm();
  } catch (error) {
    throw new Error(`API_KEY_SHA256S_SSM_PARAMETER is set but @aws-sdk/client-ssm cannot be loaded (${error.message}): on Lambda it is part of the runtime; locally set API_KEY_SHA256S instead`);
  }
  const client = new ssm.SSMClient({});
  const reply = await client.send(new ssm.GetParameterCommand({ Name: parameter, WithDecryption: true }));
  return parseKeyHashes(reply?.Parameter?.Value ?? "", `SSM parameter ${parameter}`);
}

/** True when `key` hashes to one of `hashes`; every hash is compared, in constant time. */
export function keyMatches(key, hashes) {
  const presented = keyHash(key);
  let found = false;
  for (const hash of hashes) found = timingSafeEqual(presented, hash) || found;
  return found;
}

/**
 * Checks a request. `hashes` are the configured key hashes (or null), `onLambda` whether the
 * function runs on AWS. Throws an HttpError 401 when the caller is not allowed.
 */
export function authorize(request, { hashes, onLambda }) {
  if (hashes && hashes.length > 0) {
    const header = request.headers.authorization ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) {
      throw new HttpError(401, "You didn't provide an API key. Send it as `Authorization: Bearer <key>` (the OpenAI SDKs do this with api_key).", {
        code: "missing_api_key",
        headers: { "www-authenticate": "Bearer" },
      });
    }
    if (!keyMatches(match[1], hashes)) {
      throw new HttpError(401, "Incorrect API key provided.", { code: "invalid_api_key", headers: { "www-authenticate": "Bearer" } });
    }
    return;
  }
  if (onLambda && !request.authorizer) {
    throw new HttpError(401, "this function refuses anonymous requests: keep the Function URL's authType AWS_IAM (and sign requests with SigV4) or configure API keys (API_KEY_SHA256S)", {
      type: "authentication_error",
      code: "anonymous_access_refused",
    });
  }
}

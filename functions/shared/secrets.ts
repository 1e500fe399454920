/**
 * Envelope encryption of the tenants' webhook signing secrets. The secret must be readable to sign (it is a
 * shared HMAC key), so it cannot be hashed; instead it is stored encrypted:
 *  - a fresh 256-bit data key per secret from KMS (`GenerateDataKey` with the secrets customer key and the
 *    encryption context {tenant}), AES-256-GCM over the secret locally, only the KMS-encrypted data key kept;
 *  - decryption needs `kms:Decrypt` on that key, which only the webhooks function's role is granted (cdk/),
 *    so the API role, which reads the keys table, sees ciphertext only.
 * Local mode (STAGE=local, no SECRETS_KEY_ID) uses a stand-in key-encryption key in place of KMS: same record
 * layout and code path, no AWS. The stand-in key is a published constant; it protects nothing and is never
 * accepted outside local mode.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import type { ServiceContext } from './context.js';

export interface EncryptedSecret {
  v: 1;
  /** 'kms' or 'local' (the stand-in key). */
  kek: 'kms' | 'local';
  /** The data key, encrypted by KMS (or the stand-in key), base64. */
  edk: string;
  iv: string;
  tag: string;
  ct: string;
}

const LOCAL_KEK = createHash('sha256')
  .update('falco local stand-in key-encryption key (not a secret)')
  .digest();

let kms: KMSClient | undefined;
const kmsClient = (ctx: ServiceContext) => (kms ??= new KMSClient({ region: ctx.cfg.region }));

function gcm(key: Buffer, plain: Buffer, aad: string) {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return { iv, ct, tag: c.getAuthTag() };
}

function ungcm(key: Buffer, iv: Buffer, ct: Buffer, tag: Buffer, aad: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, iv);
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(tag);
  return Buffer.concat([d.update(ct), d.final()]);
}

function useLocal(ctx: ServiceContext): boolean {
  if (ctx.cfg.secretsKeyId) return false;
  if (ctx.cfg.local) return true;
  throw new Error(
    'SECRETS_KEY_ID is not set (the stack output SecretsKeyArn); refusing to store a secret unencrypted',
  );
}

export async function encryptSecret(
  ctx: ServiceContext,
  tenant: string,
  secret: string,
): Promise<EncryptedSecret> {
  const aad = `tenant:${tenant}`;
  let dataKey: Buffer;
  let edk: Buffer;
  const local = useLocal(ctx);
  if (local) {
    dataKey = randomBytes(32);
    const w = gcm(LOCAL_KEK, dataKey, aad);
    edk = Buffer.concat([w.iv, w.tag, w.ct]);
  } else {
    const out = await kmsClient(ctx).send(
      new GenerateDataKeyCommand({
        KeyId: ctx.cfg.secretsKeyId,
        KeySpec: 'AES_256',
        EncryptionContext: { tenant },
      }),
    );
    dataKey = Buffer.from(out.Plaintext!);
    edk = Buffer.from(out.CiphertextBlob!);
  }
  const s = gcm(dataKey, Buffer.from(secret, 'utf8'), aad);
  dataKey.fill(0);
  return {
    v: 1,
    kek: local ? 'local' : 'kms',
    edk: edk.toString('base64'),
    iv: s.iv.toString('base64'),
    tag: s.tag.toString('base64'),
    ct: s.ct.toString('base64'),
  };
}

export async function decryptSecret(
  ctx: ServiceContext,
  tenant: string,
  e: EncryptedSecret,
): Promise<string> {
  const aad = `tenant:${tenant}`;
  const edk = Buffer.from(e.edk, 'base64');
  let dataKey: Buffer;
  if (e.kek === 'local') {
    if (!ctx.cfg.local)
      throw new Error('a secret encrypted with the local stand-in key is not accepted outside local mode');
    dataKey = ungcm(LOCAL_KEK, edk.subarray(0, 12), edk.subarray(28), edk.subarray(12, 28), aad);
  } else {
    const out = await kmsClient(ctx).send(
      new DecryptCommand({ CiphertextBlob: edk, EncryptionContext: { tenant } }),
    );
    dataKey = Buffer.from(out.Plaintext!);
  }
  try {
    return ungcm(
      dataKey,
      Buffer.from(e.iv, 'base64'),
      Buffer.from(e.ct, 'base64'),
      Buffer.from(e.tag, 'base64'),
      aad,
    ).toString('utf8');
  } finally {
    dataKey.fill(0);
  }
}

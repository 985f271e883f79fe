import { createHash, createHmac } from "node:crypto";
import { request } from "node:http";
import { request as httpsRequest } from "node:https";

export interface S3Credentials {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

const sha256 = (data: string) => createHash("sha256").update(data).digest("hex");
const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data).digest();

/**
 * One path-style S3 request signed with AWS Signature V4, with an empty body. Test services
 * need only "create a bucket", and pulling the whole AWS SDK into this package for that is not
 * worth it: drivers bring their own client.
 */
export function signedRequest(creds: S3Credentials, method: string, path: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, creds.endpoint);
  const now = new Date();
  const amzDate = now.toISOString().replace(/[:-]|\.\d{3}/g, "");
  const day = amzDate.slice(0, 8);
  const payloadHash = sha256("");
  const headers: Record<string, string> = { host: url.host, "x-amz-content-sha256": payloadHash, "x-amz-date": amzDate };
  const signedHeaders = Object.keys(headers).sort().join(";");
  const canonical = [
    method,
    url.pathname,
    "",
    ...Object.keys(headers)
      .sort()
      .map((name) => `${name}:${headers[name]}`),
    "",
    signedHeaders,
    payloadHash,
  ].join("\n");
  const scope = `${day}/${creds.region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  let key: Buffer = hmac(`AWS4${creds.secretAccessKey}`, day);
  for (const part of [creds.region, "s3", "aws4_request"]) key = hmac(key, part);
  const signature = createHmac("sha256", key).update(toSign).digest("hex");
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  const send = url.protocol === "https:" ? httpsRequest : request;
  return new Promise((resolve, reject) => {
    const req = send(url, { method, headers, timeout: 10_000 }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`test-services: ${method} ${url.href} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

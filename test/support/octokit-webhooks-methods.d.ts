// @octokit/webhooks-methods declares its types under package.json `exports` only, which the
// project's moduleResolution (node10) does not read: its two functions, as the package types them.
declare module '@octokit/webhooks-methods' {
  export function sign(secret: string, payload: string): Promise<string>;
  export function verify(secret: string, eventPayload: string, signature: string): Promise<boolean>;
}

// Drives the official JS SDKs against a running emulator; prints one JSON object of results.
// Usage: node contract.cjs membrane|pipedream <emulator URL> [workspace secret]
// Each scenario's result is what the SDK gave back ({ok: value}) or threw ({error: ...}); the
// assertions live in tests/test_sdk_js.py. Run from the folder npm ci installed the SDKs in.
"use strict";

function thrown(err) {
  const data = err && err.data ? err.data : {};
  return {
    error: {
      name: err && err.constructor ? err.constructor.name : typeof err,
      message: String(err && err.message),
      type: data.type, key: data.key, data: data.data,
      status: err && (err.statusCode || (err.response && err.response.status)),
      body: err && err.body,
    },
  };
}

async function attempt(fn) {
  try {
    return { ok: await fn() };
  } catch (err) {
    return thrown(err);
  }
}

async function membrane(url, secret) {
  const { MembraneClient } = require("@membranehq/sdk");
  const client = new MembraneClient({ token: "pat-emulator-token", apiUri: url });
  const out = {};
  out.act = await attempt(() => client.post("/act", { key: "hubspot-create-contact", connectionKey: "crm",
    input: { email: "jane@example.com" }, meta: { from: "sdk" } }));
  out.actBadInput = await attempt(() => client.post("/act", { key: "hubspot-create-contact", connectionKey: "crm",
    input: { name: "no email" } }));
  out.actFailing = await attempt(() => client.post("/act", { key: "fail-503" }));
  out.actDefunct = await attempt(() => client.post("/act", { key: "x", connectionKey: "defunct-crm" }));
  out.getAction = await attempt(() => client.action("hubspot-create-contact").get());
  out.getActionByQuery = await attempt(() => client.action({ key: "gmail-send-email", integrationKey: "gmail" }).get());
  out.getMissing = await attempt(() => client.action("missing-action").get());
  out.runSaved = await attempt(() => client.action("hubspot-create-contact").run({ email: "a@b.io" },
    { connectionKey: "crm" }));
  out.runSavedBadInput = await attempt(() => client.action("hubspot-create-contact").run({ email: 5 },
    { connectionKey: "crm" }));
  out.runOnConnection = await attempt(() => client.connection("crm").action("gmail-send-email").run({
    to: "a@b.io", subject: "hi" }));
  const runId = out.act.ok && out.act.ok.actionRunId;
  out.runLog = await attempt(() => client.get(`action-run-logs/${runId}`));
  out.runLogs = await attempt(() => client.get("action-run-logs", { status: "success", limit: 2 }));
  out.runLogsErrors = await attempt(() => client.get("action-run-logs", { status: "error" }));
  // What the SDK refuses before sending: a token that is neither a JWT nor pat-...
  out.opaqueToken = await attempt(() => new MembraneClient({ token: "emulator-token", apiUri: url })
    .post("/act", { key: "x", connectionKey: "c" }));
  if (secret) {
    const minted = new MembraneClient({ workspaceKey: "ws-key", workspaceSecret: secret, tenantKey: "tenant-1",
      apiUri: url });
    out.workspaceKey = await attempt(() => minted.post("/act", { key: "echo", connectionKey: "c", input: { n: 1 } }));
    out.wrongSecret = await attempt(() => new MembraneClient({ workspaceKey: "ws-key", workspaceSecret: "wrong",
      apiUri: url }).post("/act", { key: "echo", connectionKey: "c" }));
  }
  return out;
}

async function pipedream(url) {
  const { PipedreamClient } = require("@pipedream/sdk");
  const client = new PipedreamClient({ clientId: "js-client", clientSecret: "js-secret", projectId: "proj_js42",
    projectEnvironment: "development", baseUrl: url, maxRetries: 0 });
  const user = "cus_js";
  const out = {};
  out.run = await attempt(() => client.actions.run({ id: "slack-post-message", externalUserId: user,
    configuredProps: { slack: { authProvisionId: "apn_1" }, channel: "C1", text: "hi" }, stashId: "NEW" }));
  out.runBadProps = await attempt(() => client.actions.run({ id: "slack-post-message", externalUserId: user,
    configuredProps: { channel: 1 } }));
  out.retrieve = await attempt(() => client.actions.retrieve("github-create-issue"));
  out.component = await attempt(() => client.components.retrieve("github-create-issue"));
  out.reload = await attempt(() => client.actions.reloadProps({ id: "github-create-issue", externalUserId: user,
    configuredProps: { repo: "a/b" } }));
  out.accounts = await attempt(async () => {
    const page = await client.accounts.list({ externalUserId: user, app: "slack" });
    const items = [];
    for await (const account of page) items.push(account);
    return items;
  });
  out.proxyGet = await attempt(() => client.proxy.get({ url: "https://api.github.com/user", externalUserId: user,
    accountId: "apn_1", params: { page: "2" }, headers: { "X-Trace": "t-1" } }));
  out.proxyPost = await attempt(() => client.proxy.post({ url: "https://api.github.com/repos/a/b/issues",
    externalUserId: user, accountId: "apn_1", body: { title: "t" } }));
  out.proxyBinary = await attempt(async () => {
    const answer = await client.proxy.get({ url: "https://files.example.com/image.png", externalUserId: user,
      accountId: "apn_1", headers: { Accept: "image/png" } });
    const stream = answer && typeof answer.arrayBuffer === "function" ? answer
      : answer && answer.data ? answer.data : answer;
    if (stream && typeof stream.arrayBuffer === "function") {
      return { base64: Buffer.from(await stream.arrayBuffer()).toString("base64") };
    }
    return { unknown: typeof stream };
  });
  out.failing = await attempt(() => client.actions.run({ id: "fail-404", externalUserId: user }));
  return out;
}

(async () => {
  const [which, url, secret] = process.argv.slice(2);
  const out = which === "membrane" ? await membrane(url, secret) : await pipedream(url);
  process.stdout.write(JSON.stringify(out) + "\n");
})().catch((err) => {
  process.stderr.write(String(err && err.stack) + "\n");
  process.exit(2);
});

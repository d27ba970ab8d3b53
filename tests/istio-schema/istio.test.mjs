// `make istio-check`: every manifest in envoy/istio/ against Istio's own CRD schemas
// (check.mjs says what that covers and what it does not), the broken manifests that the
// check must refuse, and the WasmPlugin as the gate sees it: its upstream clusters against
// the ServiceEntry and DestinationRules, and its pluginConfig run by the gate in Envoy.
// Needs ENVOY_BIN (an Envoy 1.40) and WASM (the built module): the Makefile passes both.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { documents, problems } from "./check.mjs";
import { bootstrap, envoyValidate, upstreamProblems } from "./gate.mjs";

const ISTIO_DIR = path.resolve(import.meta.dirname, "../../envoy/istio");
const manifests = fs.readdirSync(ISTIO_DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
const byFile = manifests.map((f) => documents(fs.readFileSync(path.join(ISTIO_DIR, f), "utf8"), f));
const all = byFile.flat();
const plugin = all.find((r) => r.kind === "WasmPlugin" && r.spec?.pluginConfig?.role !== "api");
// The API role's WasmPlugins (api-wasmplugin.yaml): the backend's sidecar, an egress gateway.
const apiPlugins = all.filter((r) => r.kind === "WasmPlugin" && r.spec?.pluginConfig?.role === "api");
// Stand-ins for the three secrets the WasmPlugin takes from the proxy's environment.
const SECRETS = {
  WECHAT_TOKEN: "istio-check-token",
  WECHAT_APPSECRET: "istio-check-secret",
  WECHAT_AES_KEY: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
};

test("envoy/istio/ has the manifests the README walks through", () => {
  for (const f of ["wasmplugin.yaml", "serviceentry.yaml", "destinationrule.yaml", "virtualservice.yaml", "gateway.yaml",
    "api-wasmplugin.yaml", "api-serviceentry.yaml", "api-egress.yaml", "api-authorizationpolicy.yaml"]) {
    assert.ok(manifests.includes(f), `envoy/istio/${f} is missing`);
  }
});

// One pass of the check over every document (one TypeScript program for all of them).
const allFound = await problems(all);

for (const [n, file] of manifests.entries()) {
  test(`${file}: every document matches Istio's CRD schema`, () => {
    const objs = byFile[n];
    assert.ok(objs.length > 0, `${file} has no document`);
    const start = byFile.slice(0, n).flat().length;
    const found = allFound.slice(start, start + objs.length);
    const failures = found.flatMap((list, i) => list.map((p) => `${objs[i].kind} ${objs[i].metadata?.name}: ${p}`));
    assert.deepEqual(failures, []);
  });
}

// Each of these must be refused, for the reason given (words of the message).
const WP = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x, namespace: y}\n";
const BROKEN = [
  ["an unknown phase (enum)", `${WP}spec: {url: "oci://r/x:1", phase: AUTHX}`, "phase must be equal to one of the allowed values"],
  ["a string priority (type)", `${WP}spec: {url: "oci://r/x:1", priority: high}`, "priority must be integer"],
  ["an unknown failStrategy", `${WP}spec: {url: "oci://r/x:1", failStrategy: FAIL_CLOSED}`, "failStrategy must be equal to one of"],
  ["no url (required)", `${WP}spec: {phase: AUTHN}`, "must have required property url"],
  ["a sha256 that is not 64 hex digits", `${WP}spec: {url: "oci://r/x:1", sha256: "sha256:abc"}`, "sha256 must match pattern"],
  ["a misspelt field", `${WP}spec: {url: "oci://r/x:1", failStratgy: FAIL_CLOSE}`, "'\"failStratgy\"' does not exist"],
  ["env valueFrom SECRET", `${WP}spec: {url: "oci://r/x:1", vmConfig: {env: [{name: A, valueFrom: SECRET}]}}`, "valueFrom must be equal to one of"],
  ["a HOST env with a value (CEL)", `${WP}spec: {url: "oci://r/x:1", vmConfig: {env: [{name: A, valueFrom: HOST, value: s}]}}`, "value may only be set when valueFrom is INLINE"],
  ["selector and targetRefs (CEL)", `${WP}spec: {url: "oci://r/x:1", selector: {matchLabels: {a: b}}, targetRefs: [{kind: Gateway, name: g}]}`, "only one of targetRefs or selector"],
  ["a kind Istio does not have", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugins\nmetadata: {name: x}\nspec: {}", "unknown kind"],
  ["a Kubernetes kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {}", "unknown kind"],
  ["a ServiceEntry resolution typo", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [a.example], resolution: DNS_ROUNDROBIN}", "resolution must be equal to one of"],
  ["a lowercase TLS mode", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x}\nspec: {host: a.example, trafficPolicy: {tls: {mode: simple}}}", "mode must be equal to one of"],
  ["a port number as a string", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [a], http: [{route: [{destination: {host: b, port: {number: '80'}}}]}]}", "number must be integer"],
];

const brokenFound = await problems(BROKEN.map(([what, yaml]) => documents(yaml, what)[0]));

for (const [i, [what, , words]] of BROKEN.entries()) {
  test(`the check refuses ${what}`, () => {
    const found = brokenFound[i];
    assert.ok(found.length > 0, `${what} was accepted`);
    assert.ok(found.some((p) => p.includes(words)), `${what}: refused for another reason: ${found.join("; ")}`);
  });
}

test("the gate's upstream clusters are TLS-originating ServiceEntry ports", () => {
  assert.ok(plugin, "no WasmPlugin in envoy/istio/");
  assert.deepEqual(upstreamProblems(plugin, all), []);
  const upstreams = plugin.spec.pluginConfig.source.wechat_api.upstreams.map((u) => u.authority);
  assert.deepEqual(upstreams, ["api.weixin.qq.com", "api2.weixin.qq.com"]);
});

test("an upstream on the ServiceEntry's HTTPS port (no TLS origination) is refused", () => {
  const wrong = structuredClone(plugin);
  wrong.spec.pluginConfig.source.wechat_api.upstreams[0].cluster = "outbound|443||api.weixin.qq.com";
  const found = upstreamProblems(wrong, all);
  assert.ok(found.some((p) => p.includes("the gate sends plain HTTP")), found.join("; "));
});

function envoyAndWasm() {
  const { ENVOY_BIN: envoy, WASM: wasm } = process.env;
  assert.ok(envoy && fs.existsSync(envoy), `ENVOY_BIN (${envoy}) is not an Envoy binary: run this through make istio-check`);
  assert.ok(wasm && fs.existsSync(wasm), `WASM (${wasm}) is not the built module: run this through make istio-check`);
  return { envoy, wasm: path.resolve(wasm) };
}

test("Envoy 1.40 loads the gate with the WasmPlugin's pluginConfig, as Istio hands it over", () => {
  const { envoy, wasm } = envoyAndWasm();
  const { ok, log } = envoyValidate(envoy, bootstrap(plugin, wasm), SECRETS);
  assert.ok(ok, `envoy --mode validate refused the WasmPlugin's filter:\n${log}`);
  assert.match(log, /wechat-gate configured: official_account on path \/wechat/, "the gate did not report its configuration");
});

test("the gate refuses a pluginConfig with a misspelt field, so the test above can fail", () => {
  const { envoy, wasm } = envoyAndWasm();
  const wrong = structuredClone(plugin);
  wrong.spec.pluginConfig.dedupe_second = 15;
  const { ok, log } = envoyValidate(envoy, bootstrap(wrong, wasm), SECRETS);
  assert.ok(!ok, "envoy --mode validate accepted a pluginConfig with an unknown field");
  assert.match(log, /wechat-gate refused its/);
});

test("the gate refuses to start without the secrets from the proxy's environment", () => {
  const { envoy, wasm } = envoyAndWasm();
  const { ok, log } = envoyValidate(envoy, bootstrap(plugin, wasm), SECRETS, ["WECHAT_APPSECRET"]);
  assert.ok(!ok, "envoy --mode validate accepted the gate without WECHAT_APPSECRET");
  assert.match(log, /wechat-gate refused its/);
});

// The API role (docs/api-role.md, "Istio"): never on the ingress gateway, its upstreams the
// TLS-originating clusters visible from its own namespace, its pluginConfig run by the gate.
test("the API role's WasmPlugins: the sidecar's outbound path or an egress gateway, never the ingress", () => {
  assert.equal(apiPlugins.length, 2, "api-wasmplugin.yaml has the sidecar and the egress gateway variants");
  for (const p of apiPlugins) {
    const where = `${p.metadata.namespace}/${p.metadata.name}`;
    assert.notEqual(p.metadata.namespace, plugin.metadata.namespace, `${where} shares the ingress gateway's namespace`);
    assert.notEqual(p.spec.selector?.matchLabels?.istio, "ingressgateway", `${where} selects the ingress gateway`);
    assert.deepEqual(p.spec.match.map((m) => m.mode), ["CLIENT"], `${where}: match mode CLIENT`);
    assert.equal(p.spec.phase, "STATS", `${where}: after Istio's authorization`);
    assert.ok(p.spec.pluginConfig.callers?.length > 0, `${where}: callers`);
    assert.deepEqual(upstreamProblems(p, all), [], where);
  }
});

test("the egress gateway's AuthorizationPolicy names the callers on the gate's host", () => {
  const policy = all.find((r) => r.kind === "AuthorizationPolicy");
  assert.ok(policy, "no AuthorizationPolicy in envoy/istio/");
  const egress = apiPlugins.find((p) => p.spec.selector?.matchLabels?.istio === "egressgateway");
  assert.equal(policy.metadata.namespace, egress.metadata.namespace);
  assert.deepEqual(policy.spec.selector, egress.spec.selector);
  const rule = policy.spec.rules[0];
  assert.equal(policy.spec.action, "DENY");
  assert.ok(rule.from[0].source.notPrincipals.every((p) => p.startsWith("cluster.local/ns/")));
  assert.ok(rule.to[0].operation.hosts.includes("wechat-api.internal"));
});

for (const [i, label] of ["sidecar", "egress gateway"].entries()) {
  test(`Envoy 1.40 loads the gate with the API role's pluginConfig (${label})`, () => {
    const { envoy, wasm } = envoyAndWasm();
    const { ok, log } = envoyValidate(envoy, bootstrap(apiPlugins[i], wasm), SECRETS);
    assert.ok(ok, `envoy --mode validate refused the API role's filter:\n${log}`);
    assert.match(log, /wechat-gate configured: API role for official_account/, "the gate did not report its configuration");
  });
}

// The WasmPlugin seen from the gate's side: its upstream clusters against the ServiceEntry
// and DestinationRules, and the Envoy filter config Istio builds from it, run in Envoy.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const visibleFrom = (res, ns) => {
  const to = res.spec?.exportTo ?? ["*"];
  return to.includes("*") || (to.includes(".") && res.metadata?.namespace === ns) || to.includes(ns);
};

/** The plugin's WeChat API settings: `source.wechat_api`, or the API role's `wechat_api`. */
const wechatApi = (plugin) => plugin.spec?.pluginConfig?.source?.wechat_api ?? plugin.spec?.pluginConfig?.wechat_api;

/**
 * What keeps each `source.wechat_api.upstreams` entry from reaching WeChat over TLS: its
 * cluster must be a ServiceEntry's `outbound|PORT||HOST` for an HTTP port (the gate speaks
 * plain HTTP) whose DestinationRule originates TLS with SNI and SAN check for that host.
 */
export function upstreamProblems(plugin, resources) {
  const ns = plugin.metadata?.namespace;
  const upstreams = wechatApi(plugin)?.upstreams ?? [];
  if (upstreams.length === 0) return ["pluginConfig has no source.wechat_api.upstreams (API role: wechat_api.upstreams)"];
  const entries = resources.filter((r) => r.kind === "ServiceEntry" && visibleFrom(r, ns));
  const rules = resources.filter((r) => r.kind === "DestinationRule" && visibleFrom(r, ns));
  return upstreams.flatMap(({ cluster, authority }) => {
    const m = /^outbound\|(\d+)\|\|([^|]+)$/.exec(cluster ?? "");
    if (!m) return [`${cluster}: not an Istio cluster name outbound|PORT||HOST`];
    const [port, host] = [Number(m[1]), m[2]];
    const found = [];
    if (authority !== host) found.push(`${cluster}: authority ${authority}, want ${host}`);
    const sePort = entries
      .filter((se) => se.spec.hosts?.includes(host))
      .flatMap((se) => se.spec.ports ?? [])
      .find((p) => p.number === port);
    if (!sePort) return [...found, `${cluster}: no ServiceEntry visible from ${ns} has ${host} port ${port}`];
    if (sePort.protocol !== "HTTP") found.push(`${cluster}: port ${port} is ${sePort.protocol}, the gate sends plain HTTP`);
    const tls = rules
      .filter((dr) => dr.spec.host === host)
      .flatMap((dr) => dr.spec.trafficPolicy?.portLevelSettings ?? [])
      .find((s) => s.port?.number === port)?.tls;
    if (tls?.mode !== "SIMPLE") found.push(`${cluster}: no DestinationRule originates TLS (mode SIMPLE) on port ${port}`);
    else if (tls.sni !== host || !tls.subjectAltNames?.includes(host))
      found.push(`${cluster}: the TLS origination must have sni ${host} and subjectAltNames [${host}]`);
    if ((sePort.targetPort ?? port) !== 443) found.push(`${cluster}: port ${port} must go to the host's 443 (targetPort)`);
    return found;
  });
}

/**
 * A bootstrap whose one listener has the Wasm HTTP filter Istio makes of `plugin`
 * (pilot/pkg/model/extensions.go buildWasmConfig / buildVMConfig): name NS.NAME, root_id =
 * pluginName, configuration = pluginConfig as JSON, HOST env -> host_env_keys, INLINE ->
 * key_values, failStrategy -> failure_policy; the module from a local file, as the agent
 * hands it over. Plus a cluster for every upstream the gate calls (never contacted here).
 */
export function bootstrap(plugin, wasm) {
  const spec = plugin.spec;
  const env = spec.vmConfig?.env ?? [];
  const policy = { FAIL_OPEN: "FAIL_OPEN", FAIL_CLOSE: "FAIL_CLOSED", FAIL_RELOAD: "FAIL_RELOAD" }[spec.failStrategy];
  const wasmFilter = {
    name: `${plugin.metadata.namespace}.${plugin.metadata.name}`,
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      config: {
        name: `${plugin.metadata.namespace}.${plugin.metadata.name}`,
        root_id: spec.pluginName ?? "",
        vm_config: {
          runtime: "envoy.wasm.runtime.v8",
          code: { local: { filename: wasm } },
          environment_variables: {
            host_env_keys: env.filter((e) => e.valueFrom === "HOST").map((e) => e.name),
            key_values: Object.fromEntries(env.filter((e) => e.valueFrom !== "HOST").map((e) => [e.name, e.value ?? ""])),
          },
        },
        configuration: {
          "@type": "type.googleapis.com/google.protobuf.StringValue",
          value: JSON.stringify(spec.pluginConfig ?? {}),
        },
        ...(policy ? { failure_policy: policy } : {}),
      },
    },
  };
  const router = {
    name: "envoy.filters.http.router",
    typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
  };
  const clusters = (wechatApi(plugin)?.upstreams ?? []).map(({ cluster }) => ({
    name: cluster,
    type: "STATIC",
    connect_timeout: "1s",
    load_assignment: {
      cluster_name: cluster,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 9 } } } }] }],
    },
  }));
  const hcm = {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    stat_prefix: "istio_check",
    route_config: {
      virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 404 } }] }],
    },
    http_filters: [wasmFilter, router],
  };
  const address = { socket_address: { address: "127.0.0.1", port_value: 0 } };
  return {
    admin: { address },
    static_resources: {
      listeners: [{ name: "main", address, filter_chains: [{ filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm }] }] }],
      clusters,
    },
  };
}

/** `envoy --mode validate` on `config`, with `env` added to the environment and `unset` removed: {ok, log}. */
export function envoyValidate(envoy, config, env, unset = []) {
  const environment = { ...process.env, ...env };
  for (const name of unset) delete environment[name];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "istio-check-"));
  try {
    const file = path.join(dir, "envoy.json");
    fs.writeFileSync(file, JSON.stringify(config));
    const out = spawnSync(envoy, ["--mode", "validate", "--use-dynamic-base-id", "-l", "info", "-c", file], {
      env: environment,
      encoding: "utf8",
      timeout: 60_000,
    });
    const log = `${out.stdout ?? ""}${out.stderr ?? ""}${out.error ? String(out.error) : ""}`;
    return { ok: out.status === 0 && /OK/.test(log), log };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

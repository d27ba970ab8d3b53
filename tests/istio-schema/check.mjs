// The checks behind `make istio-check` (istio.test.mjs runs them on envoy/istio/*.yaml).
//
// Checked, per YAML document:
// - its apiVersion/kind is an Istio resource @kubernetes-models/istio has a model for (the
//   CRDs of Istio 1.29.2); anything else is an error ("unknown kind");
// - the CRD's OpenAPI schema, through the model's validate(): types, enums, required
//   fields, patterns, min/max (ajv, compiled from the CRD);
// - no field the CRD does not declare (a typo such as `failStratgy` would otherwise be
//   dropped silently by Kubernetes): TypeScript's excess-property check of the document as
//   an object literal of the model's interface; it reports the first unknown field of a
//   document, so fix and rerun;
// - three of WasmPlugin's CEL rules (x-kubernetes-validations, which ajv does not run):
//   no `value` with valueFrom HOST, at most one of selector/targetRef/targetRefs, env
//   names unique.
// Not checked: other CEL rules (the API server runs them), anything semantic (that a
// selector matches a pod, that a host resolves, that the image exists), and pluginConfig's
// contents (the CRD takes any object there); istio.test.mjs checks those by running the gate
// on them in Envoy.
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import YAML from "yaml";

const HERE = import.meta.dirname;
const MODELS = path.join(HERE, "node_modules", "@kubernetes-models", "istio");

/** Every non-empty YAML document of `text` as a plain object; YAML errors throw. */
export function documents(text, where) {
  return YAML.parseAllDocuments(text, { uniqueKeys: true })
    .map((doc, i) => {
      if (doc.errors.length) throw new Error(`${where} document ${i + 1}: ${doc.errors[0].message}`);
      return doc.toJS();
    })
    .filter((obj) => obj !== null);
}

/** The model module for `obj`'s apiVersion/kind, or null for a kind Istio does not have. */
function modelPath(obj) {
  const [group, version] = String(obj?.apiVersion ?? "").split("/");
  if (!group?.endsWith(".istio.io") || !version || !/^[A-Za-z]+$/.test(obj?.kind ?? "")) return null;
  const file = path.join(MODELS, group, version, `${obj.kind}.js`);
  return fs.existsSync(file) ? file : null;
}

async function schemaProblem(obj, file) {
  const { [obj.kind]: Model } = await import(file);
  try {
    new Model(obj).validate();
    return null;
  } catch (err) {
    return `schema: ${err.message}`;
  }
}

/** The first undeclared field of each document (by index), from one TypeScript program. */
function unknownFields(objs) {
  const dir = fs.mkdtempSync(path.join(HERE, ".tmp-"));
  try {
    const files = objs.map((obj, i) => {
      const rel = path.relative(MODELS, modelPath(obj)).replace(/\.js$/, "");
      const file = path.join(dir, `doc${i}.ts`);
      const source =
        `import type { I${obj.kind} } from "@kubernetes-models/istio/${rel}";\n` +
        `export const doc: I${obj.kind} = ${JSON.stringify(obj, null, 1)};\n`;
      fs.writeFileSync(file, source);
      return file;
    });
    const program = ts.createProgram(files, {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
    });
    return files.map((file) => {
      const diag = ts.getPreEmitDiagnostics(program, program.getSourceFile(file))[0];
      const text = diag && ts.flattenDiagnosticMessageText(diag.messageText, " ");
      return diag ? `fields: ${text.length > 240 ? `${text.slice(0, 240)}…` : text}` : null;
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** WasmPlugin's CEL rules that matter here (the CRD's x-kubernetes-validations). */
function celProblem(obj) {
  if (obj.kind !== "WasmPlugin") return null;
  const spec = obj.spec ?? {};
  const targets = ["selector", "targetRef", "targetRefs"].filter((k) => k in spec);
  if (targets.length > 1) return `cel: only one of targetRefs or selector can be set (${targets.join(", ")})`;
  const env = spec.vmConfig?.env ?? [];
  const host = env.find((e) => e.valueFrom === "HOST" && "value" in e);
  if (host) return `cel: ${host.name}: value may only be set when valueFrom is INLINE`;
  const names = env.map((e) => e.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) return `cel: env ${dup} listed twice`;
  return null;
}

/** For each object, the list of what is wrong with it (empty when it passes). */
export async function problems(objs) {
  const known = objs.map((obj) => modelPath(obj));
  const out = objs.map((obj, i) => (known[i] ? [] : [`unknown kind ${obj?.apiVersion}/${obj?.kind}`]));
  const typed = objs.filter((_, i) => known[i]);
  const fields = unknownFields(typed);
  let t = 0;
  for (const [i, obj] of objs.entries()) {
    if (!known[i]) continue;
    const found = [await schemaProblem(obj, known[i]), fields[t++], celProblem(obj)];
    out[i].push(...found.filter(Boolean));
  }
  return out;
}

//! The README is the front door: its minimal configuration (and the API role's, with
//! docs/api-role.md's) is one the gate accepts, and
//! every link into docs/ lands on a file and a heading that exist.

use crate::harness::MANIFEST_DIR;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(MANIFEST_DIR).join(path)).expect(path)
}

#[test]
fn the_readmes_minimal_configuration_is_accepted() {
    let readme = read("README.md");
    let section = readme
        .split("## A minimal configuration")
        .nth(1)
        .expect("the README has a minimal configuration");
    let json = section
        .split("```json")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a JSON block");
    let env = |name: &str| match name {
        "WECHAT_AES_KEY" => Some("GeuKYOtmlo3LsuufAkG+oPBZOZm/L42M6eGR8KhDGgE".to_string()),
        "WECHAT_TOKEN" | "WECHAT_APPSECRET" => Some(format!("{name}-value")),
        _ => None,
    };
    let config = gate::config::parse(json.as_bytes(), &env)
        .unwrap_or_else(|e| panic!("the README's configuration is refused: {e}"));
    assert!(config.safe_mode.is_some());
}

/// The README's API-role configuration, and the one in docs/api-role.md's Envoy
/// listener, are accepted as the API role.
#[test]
fn the_api_role_configurations_in_the_docs_are_accepted() {
    let env = |name: &str| (name == "WECHAT_APPSECRET").then(|| "secret-value".to_string());
    let readme = read("README.md");
    let section = readme
        .split("## Backends that hold no secret: the API role")
        .nth(1)
        .expect("the README has the API role's section");
    let json = section
        .split("```json")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a JSON block");
    let doc = read("docs/api-role.md");
    let listener = doc
        .split("value: |")
        .nth(1)
        .and_then(|s| s.split("- name: envoy.filters.http.router").next())
        .expect("docs/api-role.md's listener has a configuration");
    for (what, json) in [("README.md", json), ("docs/api-role.md", listener)] {
        match gate::config::parse_plugin(json.as_bytes(), &env) {
            Ok(gate::config::Plugin::Api(api)) => assert_eq!(api.path, "/wechat-api/mp"),
            Ok(_) => panic!("{what}: not the API role"),
            Err(e) => panic!("{what}: the API role's configuration is refused: {e}"),
        }
    }
}

/// GitHub's anchor for a heading: lowercased, punctuation dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks) and `<a id>`s.
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            found.push(anchor(h.trim_start_matches('#')));
        }
        for part in line.split("<a id=\"").skip(1) {
            if let Some(id) = part.split('"').next() {
                found.push(id.to_string());
            }
        }
    }
    found
}

#[test]
fn every_link_between_the_readme_and_docs_lands() {
    let mut files = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(Path::new(MANIFEST_DIR).join("docs")).expect("docs/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        files.push(format!("docs/{name}"));
    }
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap_or_default();
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                let joined = dir.join(path);
                let mut parts: Vec<String> = Vec::new();
                for c in joined.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        std::path::Component::Normal(p) => {
                            parts.push(p.to_string_lossy().into_owned())
                        }
                        _ => {}
                    }
                }
                parts.join("/")
            };
            let on_disk = Path::new(MANIFEST_DIR).join(&resolved);
            assert!(
                on_disk.exists(),
                "{file}: link to {target}: {resolved} does not exist"
            );
            if !fragment.is_empty() && resolved.ends_with(".md") {
                assert!(
                    anchors(&read(&resolved)).iter().any(|a| a == fragment),
                    "{file}: link to {target}: no such heading in {resolved}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} links found");
}

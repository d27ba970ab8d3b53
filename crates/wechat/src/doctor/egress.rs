//! The API's addresses (`get_api_domain_ip`) as a ready egress rule: an Envoy STATIC
//! cluster, an Istio ServiceEntry, a Kubernetes NetworkPolicy or an nftables set. Each
//! says where it came from and that it must be regenerated (WeChat changes the list).

use gate::allowlist::{parse_block, Block};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EgressFormat {
    /// An Envoy STATIC cluster (TLS to api.weixin.qq.com).
    Envoy,
    /// An Istio ServiceEntry with the addresses.
    Istio,
    /// A Kubernetes NetworkPolicy egress rule with ipBlock CIDRs.
    K8s,
    /// nftables sets of the addresses.
    Nft,
}

impl EgressFormat {
    pub fn name(self) -> &'static str {
        match self {
            EgressFormat::Envoy => "envoy",
            EgressFormat::Istio => "istio",
            EgressFormat::K8s => "k8s",
            EgressFormat::Nft => "nft",
        }
    }
}

const HOST: &str = "api.weixin.qq.com";
const HEADER: &str =
    "# api.weixin.qq.com's addresses from get_api_domain_ip (wechat-gate doctor).\n\
# WeChat changes them without notice: regenerate this daily, never pin it for good.\n";

/// An entry as a CIDR (`/32` or `/128` for a single address); `None` if not an address.
fn cidr(entry: &str) -> Option<(String, bool)> {
    let block = parse_block(entry).ok()?;
    let v6 = matches!(block, Block::V6(..));
    let text = entry.trim();
    if text.contains('/') {
        Some((text.to_string(), v6))
    } else {
        Some((format!("{text}/{}", if v6 { 128 } else { 32 }), v6))
    }
}

/// The plain addresses (no CIDR: a cluster endpoint is one address).
fn addresses(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.contains('/') && parse_block(e).is_ok())
        .map(str::to_string)
        .collect()
}

pub fn render(format: EgressFormat, entries: &[String]) -> String {
    let body = match format {
        EgressFormat::Envoy => envoy(entries),
        EgressFormat::Istio => istio(entries),
        EgressFormat::K8s => k8s(entries),
        EgressFormat::Nft => nft(entries),
    };
    format!("{HEADER}{body}")
}

fn envoy(entries: &[String]) -> String {
    let mut out = String::from(
        "name: wechat_api\ntype: STATIC\nconnect_timeout: 2s\nload_assignment:\n  \
         cluster_name: wechat_api\n  endpoints:\n  - lb_endpoints:\n",
    );
    for a in addresses(entries) {
        out.push_str(&format!(
            "    - endpoint: {{ address: {{ socket_address: {{ address: \"{a}\", port_value: 443 }} }} }}\n"
        ));
    }
    out.push_str(&format!(
        "transport_socket:\n  name: envoy.transport_sockets.tls\n  typed_config:\n    \
         \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n    \
         sni: {HOST}\n    common_tls_context:\n      validation_context:\n        \
         trusted_ca: {{ filename: /etc/ssl/certs/ca-certificates.crt }}\n        \
         match_typed_subject_alt_names:\n        - san_type: DNS\n          \
         matcher: {{ exact: {HOST} }}\n"
    ));
    out
}

fn istio(entries: &[String]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: wechat-api\n\
         spec:\n  hosts: [\"{HOST}\"]\n  location: MESH_EXTERNAL\n  resolution: NONE\n  \
         ports:\n  - {{ number: 443, name: tls, protocol: TLS }}\n  addresses:\n"
    );
    for (c, _) in entries.iter().filter_map(|e| cidr(e)) {
        out.push_str(&format!("  - \"{c}\"\n"));
    }
    out
}

fn k8s(entries: &[String]) -> String {
    let mut out = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: wechat-api-egress\n\
         spec:\n  podSelector: {}   # narrow this to the gate's pods\n  policyTypes: [Egress]\n  \
         egress:\n  - ports:\n    - { protocol: TCP, port: 443 }\n    to:\n",
    );
    for (c, _) in entries.iter().filter_map(|e| cidr(e)) {
        out.push_str(&format!("    - ipBlock: {{ cidr: \"{c}\" }}\n"));
    }
    out.push_str("# DNS (port 53) needs its own egress rule if this policy is the only one.\n");
    out
}

fn nft(entries: &[String]) -> String {
    let all: Vec<(String, bool)> = entries.iter().filter_map(|e| cidr(e)).collect();
    let mut out = String::from("table inet wechat_gate {\n");
    for (v6, name, kind) in [
        (false, "wechat_api_v4", "ipv4_addr"),
        (true, "wechat_api_v6", "ipv6_addr"),
    ] {
        let set: Vec<&str> = all
            .iter()
            .filter(|(_, is_v6)| *is_v6 == v6)
            .map(|(c, _)| c.as_str())
            .collect();
        out.push_str(&format!(
            "  set {name} {{\n    type {kind}\n    flags interval\n"
        ));
        if !set.is_empty() {
            out.push_str(&format!("    elements = {{ {} }}\n", set.join(", ")));
        }
        out.push_str("  }\n");
    }
    out.push_str(
        "}\n# then, in your output chain: ip daddr @wechat_api_v4 tcp dport 443 accept\n\
         #                           ip6 daddr @wechat_api_v6 tcp dport 443 accept\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<String> {
        ["101.89.47.18", "240e:e1:a900:50::18", "10.0.0.0/8", "junk"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn single_addresses_become_host_cidrs() {
        assert_eq!(cidr("1.2.3.4"), Some(("1.2.3.4/32".into(), false)));
        assert_eq!(cidr("240e::1"), Some(("240e::1/128".into(), true)));
        assert_eq!(cidr("10.0.0.0/8"), Some(("10.0.0.0/8".into(), false)));
        assert_eq!(cidr("junk"), None);
    }

    #[test]
    fn every_format_warns_to_regenerate() {
        for f in [
            EgressFormat::Envoy,
            EgressFormat::Istio,
            EgressFormat::K8s,
            EgressFormat::Nft,
        ] {
            let rule = render(f, &list());
            assert!(rule.contains("regenerate this daily"), "{}", f.name());
            assert!(!rule.contains("junk"), "{}", f.name());
        }
    }

    #[test]
    fn the_envoy_cluster_lists_single_addresses_only() {
        let rule = render(EgressFormat::Envoy, &list());
        assert_eq!(rule.matches("socket_address").count(), 2, "{rule}");
        assert!(rule.contains("address: \"240e:e1:a900:50::18\", port_value: 443"));
    }

    #[test]
    fn nft_sets_split_the_families_and_an_empty_set_has_no_elements() {
        let rule = render(EgressFormat::Nft, &["1.2.3.4".to_string()]);
        assert!(rule.contains("elements = { 1.2.3.4/32 }"), "{rule}");
        assert_eq!(rule.matches("elements").count(), 1, "{rule}");
    }
}

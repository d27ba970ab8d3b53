//! One request: gather method, path, source and time, let `verify::decide` judge,
//! then answer locally or forward with the gate's headers set.

use super::calls;
use super::metrics::Metrics;
use super::root::Admission;
use crate::config::Config;
use crate::verify::{self, Reason, Rejection, RequestHead, Sources, Verdict};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct GateHttp {
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    admission: Rc<Admission>,
}

impl GateHttp {
    pub fn new(
        config: Option<Rc<Config>>,
        metrics: Option<Rc<Metrics>>,
        admission: Rc<Admission>,
    ) -> Self {
        GateHttp {
            config,
            metrics,
            admission,
        }
    }

    fn reject(&self, rejection: &Rejection) -> Action {
        if let Some(m) = &self.metrics {
            m.rejected(rejection.reason);
        }
        log::debug!(
            "rejected {} ({}) from {}: {}",
            rejection.reason.name(),
            rejection.reason.status(),
            source_for_log(),
            rejection.detail
        );
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "text/plain; charset=utf-8")];
        headers.extend_from_slice(rejection.headers());
        calls::send_response(
            rejection.reason.status(),
            &headers,
            rejection.body().as_bytes(),
        );
        Action::Pause
    }

    /// Removes every client-sent `x-wechat-gate-*` header and sets the gate's own.
    fn set_gate_headers(&self, openid: Option<&str>) -> Result<(), Rejection> {
        let names = calls::request_header_names()
            .ok_or_else(|| malformed("request headers could not be read"))?;
        for name in names.iter().filter(|n| verify::is_gate_header(n)) {
            let name =
                std::str::from_utf8(name).map_err(|_| malformed("a header name is not valid"))?;
            if !calls::set_request_header(name, None) {
                return Err(malformed(
                    "a client-sent x-wechat-gate-* header could not be removed",
                ));
            }
        }
        let set = calls::set_request_header("x-wechat-gate-verified", Some("1"))
            && openid.is_none_or(|o| calls::set_request_header("x-wechat-gate-openid", Some(o)));
        if !set {
            return Err(malformed("the gate's headers could not be set"));
        }
        Ok(())
    }
}

fn malformed(detail: &'static str) -> Rejection {
    Rejection {
        reason: Reason::Malformed,
        detail: detail.into(),
    }
}

fn source_for_log() -> String {
    calls::property(&["source", "address"])
        .map(|a| String::from_utf8_lossy(&a).into_owned())
        .unwrap_or_else(|| "an unknown source".to_string())
}

impl Context for GateHttp {}

impl HttpContext for GateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            calls::send_response(503, &[], b"wechat-gate: not configured\n");
            return Action::Pause;
        };
        let method = calls::request_header(":method").unwrap_or_default();
        let path = calls::request_header(":path");
        let source = calls::property(&["source", "address"]);
        let head = RequestHead {
            method: &method,
            path: path.as_deref(),
            source: source.as_deref(),
        };
        let sources = Sources {
            allow: &self.admission.allow,
            live_list_ready: self.admission.live_list_ready,
        };
        let verdict = verify::decide(&head, &config, sources, calls::now_unix());
        match verdict {
            Verdict::PassThrough => {
                if let Some(m) = &self.metrics {
                    m.passed_through();
                }
                Action::Continue
            }
            Verdict::Reject(rejection) => self.reject(&rejection),
            Verdict::Echo { echostr, source } => {
                if let Some(m) = &self.metrics {
                    m.source(source);
                    m.handshake();
                }
                calls::send_response(200, &[("content-type", "text/plain")], echostr.as_bytes());
                Action::Pause
            }
            Verdict::Forward { openid, source } => {
                let declared = calls::request_header("content-length");
                if let Err(rejection) =
                    verify::check_body(declared.as_deref(), end_of_stream, config.max_body_bytes)
                {
                    return self.reject(&rejection);
                }
                if let Err(rejection) = self.set_gate_headers(openid.as_deref()) {
                    return self.reject(&rejection);
                }
                if let Some(m) = &self.metrics {
                    m.source(source);
                    m.forwarded();
                }
                if source == verify::SourceOutcome::ReportOnly {
                    log::debug!(
                        "report mode: forwarding a request from unlisted {}",
                        source_for_log()
                    );
                }
                Action::Continue
            }
        }
    }
}

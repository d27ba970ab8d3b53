//! The plugin configuration (`gate::config::parse_plugin`, either role) with an
//! environment lookup: any bytes give a configuration or an error naming a field, and neither `Debug` nor the
//! start-up summary shows a secret that came from the environment.
#![no_main]

use gate::config;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "env-secret-4c1d9e";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" | "SECRET" | "APP_SECRET" => Some(SECRET.to_string()),
        "KEY" | "ENCODING_AES_KEY" => Some(KEY.to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    match config::parse_plugin(data, &env) {
        Ok(c) => {
            let summary = match &c {
                config::Plugin::Callback(c) => c.summary(),
                config::Plugin::Api(c) => c.summary(),
            };
            let shown = format!("{c:?} {summary}");
            let given = String::from_utf8_lossy(data);
            if !given.contains(SECRET) {
                assert!(!shown.contains(SECRET), "a secret shows: {shown}");
            }
            assert!(!shown.contains(KEY) || given.contains(KEY), "{shown}");
            // Parsing is a function of the bytes and the environment.
            assert_eq!(config::parse_plugin(data, &env).ok(), Some(c));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
